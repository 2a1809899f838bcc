"""``/dashboard``: a server-rendered page (inline CSS and SVG, no external assets) of the control plane's
KPIs against the reference, routes, caches, quality by domain, weaknesses and recent decisions."""
