//! Prometheus text exposition at /metrics: broker totals and per-queue depth, named like
//! rabbitmq_prometheus's metrics with a warren_ prefix.

use super::http::Response;
use crate::broker::Broker;
use std::fmt::Write;

pub fn render(broker: &Broker) -> Response {
    let mut s = String::new();
    let conns = broker.connections();
    let channels = super::reply::channel_count(&conns);
    let (recv, send, messages) = broker.totals();
    let published = messages.count(crate::stats::Stat::Publish);
    let delivered = messages.deliver_get().0;
    let gauge = |s: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    let counter = |s: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    };
    gauge(
        &mut s,
        "warren_connections",
        "Open AMQP connections",
        conns.len() as u64,
    );
    gauge(&mut s, "warren_channels", "Open channels", channels);
    counter(
        &mut s,
        "warren_received_bytes_total",
        "Bytes read from clients",
        recv,
    );
    counter(
        &mut s,
        "warren_sent_bytes_total",
        "Bytes written to clients",
        send,
    );
    counter(
        &mut s,
        "warren_published_total",
        "Messages published",
        published,
    );
    counter(
        &mut s,
        "warren_delivered_total",
        "Messages delivered or fetched",
        delivered,
    );
    let _ = writeln!(
        s,
        "# HELP warren_queue_messages_ready Ready messages per queue\n# TYPE warren_queue_messages_ready gauge"
    );
    let mut unacked = String::new();
    let mut consumers = String::new();
    for vh in broker.vhosts() {
        let mut qs = vh.queues();
        qs.sort_by(|a, b| a.name().cmp(b.name()));
        for q in qs {
            let labels = format!(
                "vhost=\"{}\",queue=\"{}\"",
                escape(&vh.name),
                escape(q.name())
            );
            let _ = writeln!(
                s,
                "warren_queue_messages_ready{{{labels}}} {}",
                q.message_count()
            );
            let _ = writeln!(
                unacked,
                "warren_queue_messages_unacked{{{labels}}} {}",
                q.unacked_count()
            );
            let _ = writeln!(
                consumers,
                "warren_queue_consumers{{{labels}}} {}",
                q.consumer_count()
            );
        }
    }
    s.push_str("# HELP warren_queue_messages_unacked Delivered, unacknowledged messages per queue\n# TYPE warren_queue_messages_unacked gauge\n");
    s.push_str(&unacked);
    s.push_str(
        "# HELP warren_queue_consumers Consumers per queue\n# TYPE warren_queue_consumers gauge\n",
    );
    s.push_str(&consumers);
    Response {
        status: 200,
        content_type: "text/plain; version=0.0.4",
        body: s.into_bytes(),
        allow: None,
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
