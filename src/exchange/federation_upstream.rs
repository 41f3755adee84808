//! The `x-federation-upstream` exchange type, which RabbitMQ's federation plugin declares on
//! the upstream broker of an exchange link: it routes as a fanout to the link's queue, but
//! drops a message that has crossed `x-max-hops` links already or has been to the downstream
//! (its `x-received-from` names the downstream's cluster and vhost). With it, a RabbitMQ node
//! federates an exchange from Warren. Warren's own federation links check the
//! same rule before republishing.

use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::{AMQPValue, FieldTable};

pub const TYPE: &str = "x-federation-upstream";

/// The plugin's check at declare: `x-max-hops` present, of AMQP type long ('l').
pub fn validate(arguments: &FieldTable) -> AmqpResult<()> {
    match arguments.inner().get("x-max-hops") {
        None => Err(AmqpError::precondition_failed(
            "Argument x-max-hops missing",
        )),
        Some(AMQPValue::LongLongInt(_)) => Ok(()),
        Some(_) => Err(AmqpError::precondition_failed(
            "Argument x-max-hops must be of type long",
        )),
    }
}

fn text(v: Option<&AMQPValue>) -> Option<String> {
    v.and_then(crate::args::as_str)
}

/// Whether a message with `headers` goes on past an exchange of this type with `arguments`.
pub fn forwards(arguments: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let args = arguments.inner();
    let max_hops = args
        .get("x-max-hops")
        .and_then(crate::args::as_i64)
        .unwrap_or(1);
    let name = text(args.get("x-downstream-name")).unwrap_or_else(|| "unknown".into());
    let vhost = text(args.get("x-downstream-vhost")).unwrap_or_else(|| "unknown".into());
    should_forward(headers, max_hops, &name, &vhost)
}

/// RabbitMQ's `rabbit_federation_util:should_forward`: fewer than `max_hops` links crossed,
/// and none of them from the downstream `name`/`vhost`.
pub fn should_forward(
    headers: Option<&FieldTable>,
    max_hops: i64,
    name: &str,
    vhost: &str,
) -> bool {
    let Some(AMQPValue::FieldArray(a)) = headers.and_then(|h| h.inner().get("x-received-from"))
    else {
        return true;
    };
    let hops = a.as_slice();
    let seen = hops.iter().any(|v| match v {
        AMQPValue::FieldTable(t) => {
            let t = t.inner();
            text(t.get("cluster-name")).as_deref() == Some(name)
                && text(t.get("vhost")).as_deref() == Some(vhost)
        }
        _ => false,
    });
    (hops.len() as i64) < max_hops && !seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::FieldArray;

    fn hop(cluster: &str, vhost: &str) -> AMQPValue {
        let mut t = FieldTable::default();
        t.insert("cluster-name".into(), AMQPValue::LongString(cluster.into()));
        t.insert("vhost".into(), AMQPValue::LongString(vhost.into()));
        AMQPValue::FieldTable(t)
    }

    fn received(hops: Vec<AMQPValue>) -> FieldTable {
        let mut h = FieldTable::default();
        h.insert(
            "x-received-from".into(),
            AMQPValue::FieldArray(FieldArray::from(hops)),
        );
        h
    }

    #[test]
    fn hops_and_the_downstream_itself_stop_a_message() {
        assert!(should_forward(None, 1, "d", "/"));
        assert!(should_forward(Some(&FieldTable::default()), 1, "d", "/"));
        let one = received(vec![hop("a", "/")]);
        assert!(!should_forward(Some(&one), 1, "d", "/"), "max-hops 1");
        assert!(should_forward(Some(&one), 2, "d", "/"));
        assert!(
            !should_forward(Some(&one), 2, "a", "/"),
            "back where it came from"
        );
        assert!(
            should_forward(Some(&one), 2, "a", "other"),
            "another vhost there"
        );
    }

    #[test]
    fn max_hops_must_be_a_long() {
        let mut args = FieldTable::default();
        assert!(validate(&args).is_err());
        args.insert("x-max-hops".into(), AMQPValue::LongInt(1));
        assert!(validate(&args).is_err());
        args.insert("x-max-hops".into(), AMQPValue::LongLongInt(1));
        assert!(validate(&args).is_ok());
    }
}
