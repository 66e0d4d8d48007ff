// The review queue with the keyboard: j / k move, a accepts, r rejects, e edits the current correction.
(function () {
  const cards = Array.from(document.querySelectorAll("[data-review]"));
  let current = 0;
  function show(i) {
    if (!cards.length) return;
    current = Math.max(0, Math.min(cards.length - 1, i));
    cards.forEach((c, n) => c.classList.toggle("current", n === current));
    cards[current].scrollIntoView({block: "nearest"});
  }
  document.addEventListener("keydown", (event) => {
    if (!cards.length || ["TEXTAREA", "INPUT"].includes(event.target.tagName)) return;
    const card = cards[current];
    if (event.key === "j") show(current + 1);
    else if (event.key === "k") show(current - 1);
    else if (event.key === "a") card.querySelector("form[data-action=accept]").submit();
    else if (event.key === "r") card.querySelector("form[data-action=reject]").submit();
    else if (event.key === "e") { event.preventDefault(); card.querySelector("textarea").focus(); }
  });
  show(0);
  // The training page follows a run: the status every two seconds, and the page again once a run it
  // saw going has ended (its result and the new version). A run just started may not hold its lock
  // yet: only a run seen going counts.
  const live = document.getElementById("live-status");
  if (live) {
    let seenRunning = false;
    const tick = async () => {
      const response = await fetch("/training/status", {credentials: "same-origin"});
      if (!response.ok) return;
      const s = await response.json();
      live.textContent = s.progress || "No run.";
      if (seenRunning && !s.running) { location.reload(); return; }
      seenRunning = seenRunning || s.running;
      setTimeout(tick, 2000);
    };
    tick();
  }
})();
