"""The web console (`tidelog serve --console-listen`): a client of the broker's own gRPC API.

`app` serves the page and checks every request (host, session, CSRF); `api` answers the page's
calls, each through `gateway` with the viewer's token, so the broker's ACLs judge the console like
any client; `tail` pushes new records as server-sent events; `history` keeps the charts' samples;
`sessions` and `render` are the small pure parts.
"""
