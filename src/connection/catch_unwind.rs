//! A panic in a connection task is a bug, not the peer's doing: catch it so that the task's
//! cleanup still runs (tokio would only end the task, and what the connection held would be lost).

/// Runs a future, turning a panic inside it into `Err` so that the caller's cleanup still runs
/// (tokio would only end the task, and what the connection held would be lost with it).
pub(super) struct CatchUnwind<F>(pub(super) std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}
