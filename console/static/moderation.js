/* Moderation queue: "select every post" for the bulk form. Without JavaScript each box is ticked by
   hand; the forms work either way. No inline script (the CSP forbids it). */
document.getElementById("select-all")?.addEventListener("change", (e) => {
  document.querySelectorAll('input[name="ids"]').forEach((box) => { box.checked = e.target.checked; });
});
