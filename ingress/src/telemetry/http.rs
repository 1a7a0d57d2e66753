//! The OTLP exporter's HTTP client: hyper (already in the build) on a one-thread tokio
//! runtime of its own.
//!
//! Why not opentelemetry-otlp's built-in clients: reqwest (blocking or async) would add a
//! second HTTP stack and TLS to the build for one POST a second, and its hyper client needs
//! a tokio reactor on the calling thread, which the SDK's batch span processor (a plain
//! thread that blocks on the export future) does not have. Here the request runs on this
//! client's own runtime and the export future only awaits its `JoinHandle`, which works from
//! any executor. Plain `http://` only: traces go to a local collector or sidecar.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// Longest an export may take (connect, send, read the answer).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector answer read (an OTLP answer is a few bytes; a proxy's error page more).
const MAX_ANSWER: usize = 1 << 20;

/// See the module documentation.
#[derive(Debug)]
pub struct OtlpClient {
    rt: Option<tokio::runtime::Runtime>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl OtlpClient {
    pub fn new() -> std::io::Result<OtlpClient> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("oms-otlp")
            .enable_all()
            .build()?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(OtlpClient {
            rt: Some(rt),
            client,
        })
    }
}

impl Drop for OtlpClient {
    fn drop(&mut self) {
        // Dropped by the exporter's thread or in an async context alike: never block here.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let rt = self.rt.as_ref().ok_or("OTLP client stopped")?;
        let client = self.client.clone();
        let task = rt.spawn(async move {
            let (parts, body) = request.into_parts();
            let req = hyper::Request::from_parts(parts, Full::new(body));
            let exchange = async {
                let resp = client.request(req).await?;
                let (parts, body) = resp.into_parts();
                let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(TIMEOUT, exchange).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {TIMEOUT:?}").into()),
            }
        });
        task.await?
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};

    /// Reads one HTTP/1.1 request (head and `content-length` body) and answers 200.
    fn serve_one(listener: &TcpListener) -> (String, Vec<u8>) {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before the request head");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed inside the body");
            buf.extend_from_slice(&chunk[..n]);
        }
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        (head, buf[head_end..head_end + len].to_vec())
    }

    /// The whole export path: SDK batch processor (its own thread) → OTLP/HTTP protobuf →
    /// this client → a collector stand-in that records the request.
    #[test]
    fn spans_are_posted_as_otlp_protobuf_to_the_traces_path() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let collector = std::thread::spawn(move || serve_one(&listener));
        let provider =
            super::super::otlp(&format!("http://127.0.0.1:{port}"), 1.0, "node-9").unwrap();
        let mut span = provider.tracer("test").start("oms.request");
        span.end();
        provider.force_flush().unwrap();
        let (head, body) = collector.join().unwrap();
        assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        // The protobuf carries the span's name and the resource's attributes as plain bytes.
        let has = |s: &[u8]| body.windows(s.len()).any(|w| w == s);
        assert!(has(b"oms.request") && has(b"node-9") && has(b"service.name"));
        provider.shutdown().unwrap();
    }
}
