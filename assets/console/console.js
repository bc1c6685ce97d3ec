// agentkey console: comfort only. Every page works without this file.
// "Copy" buttons (hidden until this script shows them) copy a secret.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
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
});
