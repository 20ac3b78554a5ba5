// Keyboard shortcuts: a key presses the element whose data-key names it (1-9, U, B, Z, ...).
// Once a form is sent, further keys wait for the next page (no second answer for this face).
let sent = false;
document.addEventListener("submit", () => { sent = true; });
document.addEventListener("keydown", (e) => {
  if (sent || e.ctrlKey || e.metaKey || e.altKey || e.target.closest("input, textarea, select")) return;
  const key = e.key === "ArrowLeft" ? "b" : e.key === "Backspace" ? "z" : e.key.toLowerCase();
  const el = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (el) { e.preventDefault(); el.click(); }
});
