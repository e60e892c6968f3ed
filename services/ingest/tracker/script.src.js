/* TopUp Analytics tracker. Source of dist/script.js and dist/script.links.js; rebuild with
 * `make tracker`.
 *
 * <script defer data-site="SITE_ID" src="https://…/js/script.js"></script>
 * Attributes: data-tier (privacy_policy | full; default banner_free), data-api (event URL),
 * data-hash (hash routing), data-outbound and data-downloads (link tracking, only in the
 * script.links.js build), data-local (also
 * track localhost, file: and automated browsers). API: topup(name, {props}),
 * topup('consent', true|false) (full tier), topup('optout', true|false).
 */
(function (w, d) {
  var loc = w.location,
    nav = w.navigator,
    script = d.currentScript,
    attr = function (k) {
      return script.getAttribute('data-' + k);
    },
    has = function (k) {
      return attr(k) != null;
    },
    site = attr('site'),
    full = attr('tier') == 'full',
    hashMode = has('hash'),
    api = attr('api') || new URL(script.src).origin + '/api/event',
    queue = [],
    timer,
    lastPage,
    store = function (kind, key, value) {
      // Storage can throw (disabled, private mode): the tracker then keeps working without it.
      try {
        kind = w[kind + 'Storage'];
        if (value === 0) kind.removeItem(key);
        else if (value) kind.setItem(key, value);
        return kind.getItem(key);
      } catch (e) {}
    },
    // Ids only need to be unique, not secret: ~52 random bits and the time.
    randomId = function () {
      return Math.random().toString(36).slice(2) + Date.now().toString(36);
    },
    on = function (target, type, listener) {
      target.addEventListener(type, listener);
    };

  if (/[?&]notrack\b/.test(loc.search)) store('local', 'topup_ignore', '1');

  function ignored() {
    return (
      store('local', 'topup_ignore') ||
      nav.globalPrivacyControl ||
      (!has('local') &&
        (/^(localhost|127\.|\[::1\])/.test(loc.hostname) ||
          loc.protocol == 'file:' ||
          nav.webdriver ||
          w.Cypress))
    );
  }

  // A tab-scoped session id that lapses after 30 minutes without an event.
  function session() {
    var now = Date.now(),
      saved = (store('session', 'topup_session') || '').split('.');
    if (!saved[1] || now - saved[1] > 18e5) saved[0] = randomId();
    store('session', 'topup_session', saved[0] + '.' + now);
    return saved[0];
  }

  function flush() {
    if (!queue.length) return;
    var body = JSON.stringify(queue[1] ? { events: queue } : queue[0]);
    queue = [];
    timer = 0;
    // A string body is sent as text/plain, so browsers skip the CORS preflight.
    if (!(nav.sendBeacon && nav.sendBeacon(api, body)))
      fetch(api, { method: 'POST', body: body, keepalive: true });
  }

  function send(name, options) {
    if (ignored()) return;
    var event = {
        n: name,
        u: loc.href,
        s: site,
        sid: session(),
        sw: screen.width,
        sh: screen.height
      },
      distinct = full && store('local', 'topup_distinct');
    if (d.referrer) event.r = d.referrer;
    if (options && options.props) event.p = options.props;
    if (hashMode) event.h = 1;
    if (distinct) event.did = distinct;
    queue.push(event);
    // Events of the same moment leave in one request.
    timer = timer || setTimeout(flush);
  }

  function page() {
    var path = loc.pathname + (hashMode ? loc.hash : '');
    if (path != lastPage) {
      lastPage = path;
      send('pageview');
    }
  }

  function topup(name, options) {
    if (name == 'consent') {
      // Only the full tier keeps a persistent id, and only after consent.
      store('local', 'topup_distinct', full && options ? store('local', 'topup_distinct') || randomId() : 0);
    } else if (name == 'optout') {
      store('local', 'topup_ignore', options === false ? 0 : '1');
    } else send(name, options);
  }

  // Link tracking is only in the dist/script.links.js build (LINKS is a build-time constant).
  function link(event) {
    var a = event.target.closest && event.target.closest('a[href]'),
      props = a && { props: { url: a.href } };
    if (!a) return;
    if (has('downloads') && /\.(pdf|xlsx?|docx?|pptx?|csv|txt|zip|gz|7z|rar|exe|dmg|pkg|mp[34]|mov)$/i.test(a.pathname))
      send('File Download', props);
    else if (has('outbound') && a.host != loc.host) send('Outbound Link: Click', props);
    // The page may be about to unload: leave now rather than on the next tick.
    flush();
  }

  var pending = (w.topup && w.topup.q) || [],
    history = w.history;
  w.topup = topup;
  ['pushState', 'replaceState'].forEach(function (method) {
    var original = history[method];
    history[method] = function () {
      original.apply(this, arguments);
      page();
    };
  });
  on(w, 'popstate', page);
  if (hashMode) on(w, 'hashchange', page);
  if (LINKS) {
    on(d, 'click', link);
    on(d, 'auxclick', link);
  }
  page();
  pending.forEach(function (args) {
    topup.apply(0, args);
  });
})(window, document);
