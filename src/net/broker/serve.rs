//! The broker's HTTP side: an HTTP/1.1 server on one relay connection (keep-alive: requests in
//! turn), each request rebuilt for its route's upstream and sent there over a connection this
//! agent connection keeps (TLS verified against the platform's roots; `SSL_CERT_FILE` adds or
//! replaces them). hyper does the framing (content length, chunked, trailers); bodies stream
//! both ways as they come (server-sent events arrive event by event) and are never stored.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::{CREDENTIAL_HEADERS, CREDENTIAL_QUERY, Route, Upstream};

/// Per address tried, for the upstream's TCP connection and TLS handshake each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, hyper::Error>;

/// One brokered request, for the net log: never a header or a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub host: String,
    pub port: u16,
    pub method: String,
    /// The upstream path, without its query.
    pub path: String,
    pub vars: String,
    /// The upstream's status, or why there was none.
    pub outcome: Result<u16, String>,
}

/// The running broker: the routes with their ready-made headers, and the TLS client.
pub struct Broker {
    routes: Vec<Route>,
    headers: Vec<Vec<(HeaderName, HeaderValue)>>,
    tls: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
}

impl Broker {
    pub fn new(routes: Vec<Route>) -> anyhow::Result<Broker> {
        let mut headers = Vec::new();
        for r in &routes {
            let mut hs = Vec::new();
            for k in &r.keys {
                let name = HeaderName::from_bytes(k.header.as_bytes())?;
                let text = match k.bearer {
                    true => format!("Bearer {}", k.real.expose()),
                    false => k.real.expose().to_owned(),
                };
                let mut value = HeaderValue::from_str(&text)
                    .map_err(|_| anyhow::anyhow!("{} cannot be sent as a header", k.var))?;
                // hyper keeps it out of its debug output and HPACK tables.
                value.set_sensitive(true);
                hs.push((name, value));
            }
            headers.push(hs);
        }
        Ok(Broker {
            routes,
            headers,
            tls: OnceLock::new(),
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Serves one agent connection until it closes. `log` hears of every request.
    pub async fn serve<IO>(self: Arc<Self>, io: IO, log: Arc<dyn Fn(Event) + Send + Sync>)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // This connection's upstream connections, one per route, reused while they last.
        let conns: Arc<Mutex<HashMap<usize, SendRequest<Incoming>>>> = Arc::default();
        let service = hyper::service::service_fn(move |req| {
            let broker = self.clone();
            let conns = conns.clone();
            let log = log.clone();
            async move { Ok::<_, Infallible>(broker.handle(req, &conns, &*log).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service)
            .await;
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        conns: &Mutex<HashMap<usize, SendRequest<Incoming>>>,
        log: &(dyn Fn(Event) + Send + Sync),
    ) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let Some((idx, rest)) = self.route_for(&path) else {
            return reply(
                StatusCode::NOT_FOUND,
                "agentbox: no brokered API at this path\n",
            );
        };
        let route = &self.routes[idx];
        let up_path = format!("{}{}", route.upstream.prefix, rest);
        let up_path = if up_path.is_empty() {
            "/".to_owned()
        } else {
            up_path
        };
        let target = match req.uri().query().map(|q| strip_credentials(q, route)) {
            Some(q) if !q.is_empty() => format!("{up_path}?{q}"),
            _ => up_path.clone(),
        };
        let mut event = Event {
            host: route.upstream.host.clone(),
            port: route.upstream.port,
            method: req.method().to_string(),
            path: up_path,
            vars: route.vars().join(","),
            outcome: Err(String::new()),
        };
        // TRACE has the upstream echo the request it got, the real key in it; CONNECT asks
        // for a raw tunnel. Neither is an API call.
        if matches!(*req.method(), Method::TRACE | Method::CONNECT) {
            let why = format!("the credential broker does not pass {}", req.method());
            event.outcome = Err(why.clone());
            log(event);
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("agentbox: {why}\n"),
            );
        }
        let upstream_req = match self.rebuild(req, idx, &target) {
            Ok(r) => r,
            Err(why) => {
                event.outcome = Err(why.clone());
                log(event);
                return reply(StatusCode::BAD_REQUEST, &format!("agentbox: {why}\n"));
            }
        };
        match self.send(idx, upstream_req, conns).await {
            Ok(resp) => {
                event.outcome = Ok(resp.status().as_u16());
                log(event);
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Err(why) => {
                event.outcome = Err(why.clone());
                log(event);
                reply(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "agentbox: credential broker: {}: {why}\n",
                        route.upstream.authority()
                    ),
                )
            }
        }
    }

    /// The route whose name is the path's first segment, and the rest of the path.
    fn route_for<'p>(&self, path: &'p str) -> Option<(usize, &'p str)> {
        let after = path.strip_prefix('/')?;
        self.routes.iter().enumerate().find_map(|(i, r)| {
            let rest = after.strip_prefix(r.name.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((i, rest))
        })
    }

    /// The request for the upstream: its path, its Host, none of the agent's credentials or
    /// hop-by-hop headers, the real key.
    fn rebuild(
        &self,
        req: Request<Incoming>,
        idx: usize,
        target: &str,
    ) -> Result<Request<Incoming>, String> {
        let (parts, body) = req.into_parts();
        let mut up = Request::new(body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = target
            .parse::<Uri>()
            .map_err(|_| "a path the upstream cannot take".to_owned())?;
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        let agents: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_credential(n.as_str(), &self.routes[idx]))
            .cloned()
            .collect();
        for name in agents {
            headers.remove(name);
        }
        let host = HeaderValue::from_str(&self.routes[idx].upstream.authority())
            .map_err(|_| "an upstream name that is no header".to_owned())?;
        headers.insert(header::HOST, host);
        for (name, value) in &self.headers[idx] {
            headers.insert(name.clone(), value.clone());
        }
        *up.headers_mut() = headers;
        Ok(up)
    }

    /// Sends on this connection's upstream connection for the route, or a new one.
    async fn send(
        &self,
        idx: usize,
        req: Request<Incoming>,
        conns: &Mutex<HashMap<usize, SendRequest<Incoming>>>,
    ) -> Result<Response<Incoming>, String> {
        let mut kept = conns.lock().await.remove(&idx);
        if let Some(s) = &mut kept
            && (s.is_closed() || s.ready().await.is_err())
        {
            kept = None;
        }
        let mut sender = match kept {
            Some(s) => s,
            None => self.connect(&self.routes[idx].upstream).await?,
        };
        let resp = sender.send_request(req).await.map_err(|e| e.to_string());
        if resp.is_ok() {
            conns.lock().await.insert(idx, sender);
        }
        resp
    }

    async fn connect(&self, up: &Upstream) -> Result<SendRequest<Incoming>, String> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((up.host.as_str(), up.port)),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("could not connect: {e}"))?;
        // Streamed tokens must not wait on Nagle.
        let _ = tcp.set_nodelay(true);
        if !up.https {
            return handshake(tcp).await;
        }
        let tls = self.tls().clone()?;
        let name = rustls::pki_types::ServerName::try_from(up.host.clone())
            .map_err(|e| format!("not a TLS server name: {e}"))?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_owned())?
            .map_err(|e| format!("TLS: {e}"))?;
        handshake(stream).await
    }

    /// The TLS client, made on first use (reading the root store takes a few milliseconds a
    /// run that brokers only loopback does not need).
    fn tls(&self) -> &Result<tokio_rustls::TlsConnector, String> {
        self.tls.get_or_init(tls_connector)
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no trusted root certificates found (set SSL_CERT_FILE?)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<Incoming>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Headers about one hop (RFC 9110 7.6.1), including those `Connection` names: hyper sets its
/// own framing and connection handling on each side. `Upgrade` goes too: the broker never
/// turns a request into a raw tunnel.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(n);
    }
}

/// Whether a header or query parameter `name` can carry a credential to `route`'s upstream:
/// a known credential name or one of the route's own headers, in any case, with `-` and `_`
/// the same (CGI-style servers and gateways read `x_api_key` as `X-Api-Key`).
pub(super) fn is_credential(name: &str, route: &Route) -> bool {
    let fold = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let name = fold(name);
    CREDENTIAL_HEADERS
        .iter()
        .chain(CREDENTIAL_QUERY)
        .copied()
        .chain(route.keys.iter().map(|k| k.header.as_str()))
        .any(|c| fold(c) == name)
}

/// The query without any parameter that can carry a credential (`is_credential`), its name
/// percent-decoded; a `&` part goes whole when any of its `;` parts names one, as some
/// parsers split on `;` too.
pub(super) fn strip_credentials(query: &str, route: &Route) -> String {
    query
        .split('&')
        .filter(|part| {
            !part.split(';').any(|p| {
                let name = percent_decoded(p.split('=').next().unwrap_or(""));
                is_credential(&String::from_utf8_lossy(&name), route)
            })
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `%XX` escapes decoded (`%6Bey` is `key` to the server); `+` is a space, not a letter.
fn percent_decoded(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn reply(status: StatusCode, text: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(text.to_owned()))
        .map_err(|never| match never {})
        .boxed();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
