//! Waiting on whichever of two futures finishes first.

use std::future::Future;
use std::task::Poll;

/// Which of two futures finished first.
#[derive(Debug)]
pub enum Either<A, B> {
    First(A),
    Second(B),
}

/// Polls `a` then `b`; the first ready wins (the other is dropped, so it
/// must be cancel-safe).
pub async fn first_of<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::First(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Second(v));
        }
        Poll::Pending
    })
    .await
}
