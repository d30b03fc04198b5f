//! Live output as server-sent events: `output` events (`{"stream",
//! "base64"}`) as the command writes, then one `result` (or `error`), with
//! keep-alive comments while it is quiet. The stream owns a guard: a client
//! that goes away drops it, and that cancels the command.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream;
use orchestrator_core::{OutputSink, Stream};
use tokio::sync::mpsc;

use crate::problem::ApiError;
use crate::result::RunResult;

/// One chunk of output.
pub type Chunk = (Stream, Bytes);

/// A sink sending each chunk to `tx` (dropped chunks only when the client
/// is gone; the channel is bounded by the run's output cap).
pub fn sink(tx: mpsc::UnboundedSender<Chunk>) -> OutputSink {
    OutputSink::new(move |s, b| {
        let _ = tx.send((s, Bytes::copy_from_slice(b)));
    })
}

/// Does the request ask for events?
pub fn wanted(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// Runs `on_drop` when dropped unless disarmed.
pub struct OnDrop(Option<Box<dyn FnOnce() + Send>>);

impl OnDrop {
    /// A guard for `f`.
    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }
    /// The end was reached: do nothing on drop.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

type Done = Pin<Box<dyn Future<Output = Result<RunResult, ApiError>> + Send>>;

struct State {
    events: mpsc::UnboundedReceiver<Chunk>,
    done: Option<Done>,
    end: Option<Result<RunResult, ApiError>>,
    guard: OnDrop,
    over: bool,
}

fn output_event((s, b): Chunk) -> Event {
    let stream = match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let data = serde_json::json!({
        "stream": stream,
        "base64": base64::engine::general_purpose::STANDARD.encode(&b),
    });
    Event::default().event("output").data(data.to_string())
}

fn end_event(r: Result<RunResult, ApiError>) -> Event {
    match r {
        Ok(res) => Event::default()
            .event("result")
            .data(serde_json::to_string(&res).unwrap_or_default()),
        Err(e) => Event::default()
            .event("error")
            .data(serde_json::to_string(&e.problem()).unwrap_or_default()),
    }
}

/// The event stream of a command whose chunks arrive on `events` and whose
/// end is `done`; `guard` runs if the stream is dropped before the end.
pub fn response(
    events: mpsc::UnboundedReceiver<Chunk>,
    done: impl Future<Output = Result<RunResult, ApiError>> + Send + 'static,
    guard: OnDrop,
) -> Response {
    let state = State {
        events,
        done: Some(Box::pin(done)),
        end: None,
        guard,
        over: false,
    };
    let s = stream::unfold(state, |mut st| async move {
        if st.over {
            return None;
        }
        if let Some(done) = st.done.as_mut() {
            tokio::select! {
                biased;
                Some(chunk) = st.events.recv() => {
                    return Some((Ok::<_, Infallible>(output_event(chunk)), st));
                }
                r = done => {
                    st.done = None;
                    st.end = Some(r);
                }
            }
        }
        // Everything the command wrote was sent before it ended.
        if let Ok(chunk) = st.events.try_recv() {
            return Some((Ok(output_event(chunk)), st));
        }
        let end = st.end.take()?;
        st.guard.disarm();
        st.over = true;
        Some((Ok(end_event(end)), st))
    });
    Sse::new(s)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(5))
                .text("keep-alive"),
        )
        .into_response()
}
