// Document list in the admin: reload every 3 s while any document is queued or processing,
// so the progress bars move. Stops by itself once every document is final.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector('#result_list [data-live="1"]')) {
      window.setTimeout(function () { window.location.reload(); }, 3000);
    }
  });
})();
