-- The sidecar's HTTP client inside PostgreSQL (plpython3u). One keep-alive connection per backend, float32
-- vectors in binary, texts sent in chunks, a bounded timeout: a sidecar that is down is an error, never a hang.
CREATE OR REPLACE FUNCTION mrl_internal._embed_transport()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT 'plpython' $fn$;

CREATE OR REPLACE FUNCTION mrl_internal._http_embed(texts text[], config text, kind text)
RETURNS @vec@.vector[]
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
state = GD.get("pgmrl_http")
if state is None:
    import http.client, json, socket, urllib.parse
    import numpy
    state = GD["pgmrl_http"] = {"conn": None, "target": None, "http": http.client, "json": json,
                                "np": numpy, "split": urllib.parse.urlsplit,
                                "plan": plpy.prepare("SELECT key, value FROM mrl.settings "
                                                     "WHERE key IN ('sidecar_url', 'sidecar_token', 'http_timeout_s')")}
if not texts:
    return []
settings = {r["key"]: r["value"] for r in plpy.execute(state["plan"])}
url = settings.get("sidecar_url", "http://127.0.0.1:8765").rstrip("/")
timeout = float(settings.get("http_timeout_s", "30"))
parts = state["split"](url)
target = (parts.scheme, parts.hostname, parts.port, timeout)
if state["target"] != target and state["conn"] is not None:
    state["conn"].close()
    state["conn"] = None
state["target"] = target
headers = {"Content-Type": "application/json", "Accept": "application/octet-stream"}
if settings.get("sidecar_token"):
    headers["Authorization"] = "Bearer " + settings["sidecar_token"]
hint = ("Start the sidecar with `pgmrl serve` (it records its URL in mrl.settings), "
        "or point the database at it with `pgmrl configure --sidecar-url URL`.")

def post(body):
    for attempt in (1, 2):
        if state["conn"] is None:
            cls = state["http"].HTTPSConnection if parts.scheme == "https" else state["http"].HTTPConnection
            state["conn"] = cls(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), timeout=timeout)
        try:
            state["conn"].request("POST", "/v1/embed", body=body, headers=headers)
            resp = state["conn"].getresponse()
            return resp, resp.read()
        except (state["http"].RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            state["conn"].close()
            state["conn"] = None
            if attempt == 2:
                plpy.error("pgmrl sidecar at %s closed the connection (%s)" % (url, exc), hint=hint, sqlstate="08006")
        except OSError as exc:  # refused, unreachable, timed out
            state["conn"].close()
            state["conn"] = None
            plpy.error("pgmrl sidecar at %s is not reachable (%s, timeout %.0f s)" % (url, exc, timeout),
                       hint=hint, sqlstate="08001")

out = []
for start in range(0, len(texts), 128):
    chunk = list(texts[start:start + 128])
    body = state["json"].dumps({"texts": chunk, "config": config, "kind": kind, "format": "f32"})
    resp, data = post(body)
    if resp.status != 200:
        try:
            detail = state["json"].loads(data).get("detail")
        except Exception:
            detail = data[:300].decode("utf-8", "replace")
        if resp.status == 401:
            plpy.error("pgmrl sidecar at %s refused the token" % url,
                       hint="Set the sidecar's token with `pgmrl configure --token ...` (same as PGMRL_TOKEN).",
                       sqlstate="28000")
        plpy.error("pgmrl sidecar at %s answered %d: %s" % (url, resp.status, detail),
                   sqlstate="22023" if resp.status < 500 else "58000")
    dims = int(resp.getheader("X-Dims"))
    vectors = state["np"].frombuffer(data, dtype="<f4").reshape(len(chunk), dims)
    out.extend("[" + ",".join(map(repr, v.tolist())) + "]" for v in vectors)
return out
$fn$;
