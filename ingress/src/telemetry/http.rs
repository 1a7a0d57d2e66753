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
