//! A gRPC service built at its first call. Reflection is one: each version's state is
//! every descriptor of the port, comments included, decoded into tables (0.13 MiB a
//! version), and nothing but a grpcurl or a client generator ever asks for it. Built
//! on demand, a petitd that nobody inspects never holds it; once built, it is kept.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tonic::server::NamedService;
use tower::Service;

/// `S`, made by `make` at the first request and shared by every clone after.
pub struct Lazy<S> {
    service: Arc<OnceLock<S>>,
    make: fn() -> S,
}

impl<S> Lazy<S> {
    pub fn new(make: fn() -> S) -> Lazy<S> {
        Lazy {
            service: Arc::new(OnceLock::new()),
            make,
        }
    }

    /// The service, made now if no request has made it yet.
    pub fn get(&self) -> &S {
        self.service.get_or_init(self.make)
    }
}

impl<S> Clone for Lazy<S> {
    fn clone(&self) -> Self {
        Lazy {
            service: self.service.clone(),
            make: self.make,
        }
    }
}

impl<S: NamedService> NamedService for Lazy<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, R> Service<R> for Lazy<S>
where
    S: Service<R, Error = Infallible> + Clone,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    /// Always ready: tonic's generated servers are (their `poll_ready` answers `Ready`
    /// at once), and the one made is cloned per call below.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let mut service = self.get().clone();
        service.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static MADE: AtomicUsize = AtomicUsize::new(0);

    #[derive(Clone)]
    struct Echo;

    impl Service<u32> for Echo {
        type Response = u32;
        type Error = Infallible;
        type Future = std::future::Ready<Result<u32, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, n: u32) -> Self::Future {
            std::future::ready(Ok(n + 1))
        }
    }

    #[tokio::test]
    async fn made_at_the_first_call_and_once_for_every_clone() {
        let lazy = Lazy::new(|| {
            MADE.fetch_add(1, Ordering::SeqCst);
            Echo
        });
        let mut other = lazy.clone();
        assert_eq!(MADE.load(Ordering::SeqCst), 0, "nothing made before a call");
        assert_eq!(other.call(1).await.unwrap(), 2);
        let mut first = lazy;
        assert_eq!(first.call(41).await.unwrap(), 42);
        assert_eq!(
            MADE.load(Ordering::SeqCst),
            1,
            "made once, shared by the clones"
        );
    }

    /// The reflection services petitd serves lazily build from the embedded
    /// descriptor sets (at start they were built with `?`; now a bad set would only
    /// show at the first grpcurl).
    #[test]
    fn the_reflection_services_build() {
        let _ = super::super::reflection_v1().get();
        let _ = super::super::reflection_v1alpha().get();
    }
}
