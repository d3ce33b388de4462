-- Key and channel names on one Redis (and Sentinel): derived from the prefix.
local PUBLISH = 'PUBLISH'
local function skey(id) return P .. 's:' .. id end
local function ukey(uid) return P .. 'u:' .. uid end
local function tkey(id) return P .. 't:' .. id end
local function lkey(id) return P .. 'l:' .. id end
local function schan(id) return P .. 'c:s:' .. id end
local function uchan(uid) return P .. 'c:u:' .. uid end
