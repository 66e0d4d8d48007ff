#!/bin/sh
# The official nginx image's template step, for the stand-in: every /etc/nginx/templates/*.template
# is written to /etc/nginx/conf.d without its suffix, with the variables set in the environment
# filled in (and only those: nginx's own $variables stay), before nginx starts.
set -eu
if [ "${1:-}" = nginx ]; then
    defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
    for template in /etc/nginx/templates/*.template; do
        [ -e "$template" ] || continue
        name=$(basename "$template" .template)
        envsubst "$defined" <"$template" >"/etc/nginx/conf.d/$name"
    done
fi
exec "$@"
