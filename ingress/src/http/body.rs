//! The request body handlers read: hyper's body, reporting to its connection when it has been
//! read to the end, so an answer that leaves body unread can close the connection
//! (`Connection: close`) instead of leaving the rest to be parsed as the next request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::conn::ConnState;

/// A request body tied to its connection's state.
pub struct Body {
    inner: Incoming,
    conn: Arc<ConnState>,
}

impl Body {
    pub fn new(inner: Incoming, conn: Arc<ConnState>) -> Body {
        conn.body_done
            .store(http_body::Body::is_end_stream(&inner), Ordering::Release);
        Body { inner, conn }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || http_body::Body::is_end_stream(&self.inner) {
            self.conn.body_done.store(true, Ordering::Release);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
