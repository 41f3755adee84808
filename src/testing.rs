//! A broker for tests: `TestBroker::start().await` runs Warren in this process on free ports
//! (AMQP and management), in memory, on a test clock, ready when it returns; dropping it stops
//! it. Each test may have its own, so parallel `#[tokio::test]`s never share state or clash on
//! ports. `advance(Duration)` moves the clock and runs every TTL, x-expires and x-delay that
//! falls due, in order, before it returns.
//!
//! ```no_run
//! # async fn example() {
//! let broker = warren::testing::TestBroker::start().await;
//! let url = broker.url(); // amqp://guest:guest@127.0.0.1:PORT/%2f, for any client
//! // ... run the code under test against `url` ...
//! assert!(broker.wait_for_messages("/", "jobs", 3, std::time::Duration::from_secs(5)).await);
//! broker.reset().await; // before the next test
//! # }
//! ```

use crate::{BrokerHandle, Config};
use std::sync::Arc;
use std::time::Duration;

pub struct TestBroker {
    handle: Option<BrokerHandle>,
}

impl TestBroker {
    /// In memory, on port 0 for AMQP and management. Panics if the broker cannot start
    /// (a test cannot go on without it).
    pub async fn start() -> TestBroker {
        TestBroker::with_config(Config::default()).await
    }

    /// With other settings; ports, memory-only storage, the management port and the test
    /// clock are set here.
    pub async fn with_config(config: Config) -> TestBroker {
        let config = Config {
            test_clock: true,
            bind: "127.0.0.1".into(),
            port: 0,
            mgmt_port: Some(0),
            in_memory: true,
            data_dir: None,
            ..config
        };
        match crate::start(config).await {
            Ok(handle) => TestBroker {
                handle: Some(handle),
            },
            Err(e) => panic!("the test broker did not start: {e}"),
        }
    }

    fn handle(&self) -> &BrokerHandle {
        match &self.handle {
            Some(h) => h,
            None => unreachable!("the handle is only taken on drop"),
        }
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        self.handle().url()
    }

    /// The management API's `host:port` (for HTTP clients and warrenctl's `--port`).
    pub fn mgmt_addr(&self) -> String {
        self.handle()
            .mgmt_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    pub fn broker(&self) -> &Arc<crate::Broker> {
        self.handle().broker()
    }

    /// Close every connection and remove every queue, exchange, binding, policy and
    /// non-default vhost; users stay.
    pub async fn reset(&self) {
        if let Err(e) = self.handle().reset(false).await {
            panic!("reset failed: {e}");
        }
    }

    /// Move the test clock forward, running everything that falls due on the way (TTL,
    /// x-expires, x-delay). Connections check consumer_timeout right after; `advance_settled`
    /// also waits for that.
    pub fn advance(&self, by: Duration) {
        if let Err(e) = self.broker().advance_clock(by) {
            panic!("advance failed: {e}");
        }
    }

    /// `advance`, then wait until every connection has checked consumer_timeout against the
    /// new time (a channel past it is closed, its deliveries requeued, when this returns).
    pub async fn advance_settled(&self, by: Duration) {
        if let Err(e) = self.broker().advance_clock_settled(by).await {
            panic!("advance failed: {e}");
        }
    }

    /// Ready messages in a queue now (None: no such queue).
    pub fn message_count(&self, vhost: &str, queue: &str) -> Option<u32> {
        let q = self.broker().vhost(vhost)?.queue(queue)?;
        Some(q.message_count())
    }

    /// Wait until the queue holds exactly `n` ready messages; false on timeout.
    pub async fn wait_for_messages(
        &self,
        vhost: &str,
        queue: &str,
        n: u32,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.message_count(vhost, queue) == Some(n) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The first `count` messages' bodies, left in place.
    pub fn peek(&self, vhost: &str, queue: &str, count: usize) -> Vec<bytes::Bytes> {
        let Some(q) = self.broker().vhost(vhost).and_then(|v| v.queue(queue)) else {
            return Vec::new();
        };
        q.peek(count)
            .into_iter()
            .map(|(m, _)| m.body.clone())
            .collect()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.signal_stop();
        }
    }
}
