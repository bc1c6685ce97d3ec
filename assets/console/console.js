// agentkey console: comfort only. Every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // "Copy" buttons (hidden until this script shows them) copy a secret.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          field.select();
        });
      } else {
        field.select();
        try { if (document.execCommand("copy")) { done(); } } catch (e) { /* selected for a manual copy */ }
      }
    });
  });
  // A field holding a secret selects itself on focus, for a manual copy.
  document.querySelectorAll("input.secret-value").forEach(function (field) {
    field.addEventListener("focus", function () { field.select(); });
  });
  // A form is sent once: a double click must not spend its one-time nonce
  // on a second request whose answer would hide the secret of the first.
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    });
  });
});
// A page with a secret leaves nothing behind: its field is emptied when the
// page is left, and if the browser restores it from its back/forward cache
// anyway, it is replaced by the page it leads back to.
window.addEventListener("pagehide", function () {
  document.querySelectorAll("input.secret-value").forEach(function (field) { field.value = ""; });
});
window.addEventListener("pageshow", function (event) {
  var back = document.querySelector("[data-secret-back]");
  if (event.persisted && back) { window.location.replace(back.getAttribute("href")); }
  // Buttons disabled on submit come back usable after "Back".
  document.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = false; });
});
