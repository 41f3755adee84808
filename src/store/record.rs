//! The stored form of a message: exchange, routing key, properties in their AMQP encoding (as
//! the message keeps them), and the body.

use crate::message::Message;
use bytes::Bytes;

const VERSION: u8 = 1;

pub fn encode(m: &Message) -> Vec<u8> {
    let props = m.raw_properties();
    let mut out = Vec::with_capacity(m.body.len() + props.len() + 64);
    out.push(VERSION);
    put_str(&mut out, &m.exchange);
    put_str(&mut out, &m.routing_key);
    out.extend_from_slice(&(props.len() as u32).to_be_bytes());
    out.extend_from_slice(props);
    out.extend_from_slice(&m.body);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Exchange names and routing keys are shortstrs: at most 255 bytes.
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

/// Decoded parts of a record; None when it is damaged.
pub struct Decoded {
    pub exchange: String,
    pub routing_key: String,
    pub raw_properties: Vec<u8>,
    pub body: Bytes,
}

pub fn decode(data: &[u8]) -> Option<Decoded> {
    let (&version, rest) = data.split_first()?;
    if version != VERSION {
        return None;
    }
    let (exchange, rest) = take_str(rest)?;
    let (routing_key, rest) = take_str(rest)?;
    let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    let props = rest.get(4..4 + len)?;
    let body = rest.get(4 + len..)?;
    Some(Decoded {
        exchange,
        routing_key,
        raw_properties: props.to_vec(),
        body: Bytes::copy_from_slice(body),
    })
}

fn take_str(data: &[u8]) -> Option<(String, &[u8])> {
    let (&len, rest) = data.split_first()?;
    let s = rest.get(..usize::from(len))?;
    Some((
        String::from_utf8_lossy(s).into_owned(),
        &rest[usize::from(len)..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Message::new(
            "ex",
            "rk",
            amq_protocol::protocol::BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id("m1".into()),
            Bytes::from_static(b"body"),
        );
        let d = decode(&encode(&m)).expect("decodes");
        assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("ex", "rk"));
        assert_eq!(d.raw_properties, m.raw_properties());
        assert_eq!(&d.body[..], b"body");
        assert!(decode(&[9, 9, 9]).is_none());
    }
}
