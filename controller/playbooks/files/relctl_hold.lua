-- relctl_hold: hold a request while its backend has no usable server, up to a limit.
--
-- Between the moment a site's servers go down and the moment the backups may take
-- traffic (a PostgreSQL standby promoted, then put in service by relctl failover),
-- HAProxy has no server for a request and would answer 503 at once. This action makes the
-- request wait instead, checking every 10 ms, and lets it go on as soon as a server is
-- usable; after LIMIT_MS it goes on anyway (and HAProxy answers 503 as it would).
--
--   lua-load /etc/haproxy/relctl_hold.lua
--   http-request lua.relctl_hold BACKEND LIMIT_MS if { nbsrv(BACKEND) eq 0 }
core.register_action("relctl_hold", { "http-req" }, function(txn, backend, limit_ms)
    local limit = tonumber(limit_ms) or 5000
    local waited = 0
    while waited < limit and txn.f:nbsrv(backend) == 0 do
        core.msleep(10)
        waited = waited + 10
    end
end, 2)
