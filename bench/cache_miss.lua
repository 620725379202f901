-- wrk script for bench/cache.sh's miss rows: a new URL for every request, so that each one
-- misses the proxy's cache, goes to the origin and is stored. args[1] is the path prefix (one
-- per round, so that a round does not hit what the round before stored).
local prefix, n = "/miss/", 0

function init(args)
    prefix = args[1] or prefix
end

function request()
    n = n + 1
    return wrk.format(nil, prefix .. n)
end
