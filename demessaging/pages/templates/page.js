(function () {
  "use strict";
  var box = document.getElementById("q");
  var count = document.getElementById("count");
  var top = document.querySelectorAll("main > section.member");
  function has(node, q) { return node.getAttribute("data-words").indexOf(q) >= 0; }
  function show(node, visible) {
    node.hidden = !visible;
    var link = document.querySelector('nav [data-for="' + node.id + '"]');
    if (link) { link.hidden = !visible; }
  }
  function search(text) {
    var q = text.trim().toLowerCase(), found = 0;
    top.forEach(function (member) {
      var own = !q || has(member, q), any = own;
      member.querySelectorAll("section.member").forEach(function (method) {
        var hit = own || has(method, q);
        show(method, hit);
        any = any || hit;
        if (hit && q) { found++; }
      });
      show(member, any);
      if (own && q) { found++; }
    });
    count.textContent = q ? found + (found === 1 ? " member matches" : " members match") : "";
  }
  box.addEventListener("input", function () {
    search(box.value);
    try {
      history.replaceState(null, "", box.value ? "#q=" + encodeURIComponent(box.value) : location.pathname);
    } catch (e) { /* file:// pages may refuse; the search works anyway */ }
  });
  var given = /^#q=(.*)$/.exec(location.hash) || /[?&]q=([^&]*)/.exec(location.search);
  if (given) {
    box.value = decodeURIComponent(given[1].replace(/\+/g, " "));
    search(box.value);
  }
})();
