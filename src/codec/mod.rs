//! Frame codec: splits the byte stream into frames and writes frames out, on top of amq-protocol.
//!
//! The 7-byte frame header is read here so the declared size is checked against frame_max
//! before the payload is buffered (RabbitMQ's reader does the same); method and content-header
//! payloads are then parsed by amq-protocol. Body payloads stay `Bytes` (no per-frame Vec).

pub mod nesting;

use crate::error::AmqpError;
use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{
    basic::gen_properties, basic::AMQPProperties, parse_class, AMQPClass,
};
use bytes::{Buf, Bytes, BytesMut};

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Frame header (7) plus frame-end octet (1).
pub const FRAME_OVERHEAD: usize = 8;
/// The spec's minimum frame size, in force until tune-ok arrives.
pub const FRAME_MIN_SIZE: u32 = 4096;

/// One decoded inbound frame.
#[derive(Debug)]
pub enum Frame {
    Method(u16, Box<AMQPClass>),
    /// A method that was decoded but is refused outright (e.g. basic.qos with prefetch_size);
    /// the connection still checks the channel state first, as RabbitMQ does.
    Refused(u16, AmqpError),
    /// A content header, parsed, with its properties also kept in their encoding.
    Header(u16, Box<AMQPContentHeader>, Bytes),
    Body(u16, Bytes),
    Heartbeat(u16),
}

/// Every (class, method) pair of AMQP 0-9-1, so an unknown one is told apart from a malformed one.
fn known_method(class: u16, method: u16) -> bool {
    let methods: &[u16] = match class {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => return false,
    };
    methods.contains(&method)
}

/// Decode one frame from the front of `buf`, or `Ok(None)` if more bytes are needed.
/// `frame_max` of 0 means no limit.
pub fn decode(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, AmqpError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(AmqpError::frame_error(format!(
            "unknown frame type {kind} on channel {channel}"
        )));
    }
    // rabbit_reader allows a payload of up to frame_max (8 octets of fudge on the frame).
    if frame_max != 0 && size > frame_max {
        return Err(AmqpError::frame_error(format!(
            "frame size {size} exceeds the negotiated frame_max {frame_max}"
        )));
    }
    let size = size as usize; // ok: u32 fits usize on every supported target
    let total = 7 + size + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        return Err(AmqpError::frame_error(format!(
            "invalid frame end octet {:#x} (type {kind}, channel {channel})",
            buf[total - 1]
        )));
    }
    buf.advance(7);
    let payload = buf.split_to(size).freeze();
    buf.advance(1);
    match kind {
        FRAME_METHOD => decode_method(channel, &payload).map(Some),
        FRAME_HEADER if nesting::check_header(&payload).is_err() => {
            Ok(Some(Frame::Refused(channel, too_deep().on(60, 40))))
        }
        FRAME_HEADER => match amq_protocol::frame::parsing::parse_content_header(&payload[..]) {
            // class (2) + weight (2) + body size (8), then the properties as sent.
            Ok((&[], header)) => Ok(Some(Frame::Header(
                channel,
                Box::new(header),
                payload.slice(12..),
            ))),
            _ => Err(AmqpError::frame_error(format!(
                "cannot decode content header on channel {channel}"
            ))),
        },
        FRAME_BODY => Ok(Some(Frame::Body(channel, payload))),
        _ => Ok(Some(Frame::Heartbeat(channel))),
    }
}

fn decode_method(channel: u16, payload: &[u8]) -> Result<Frame, AmqpError> {
    if payload.len() < 4 {
        return Err(AmqpError::frame_error("method frame too short"));
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    let method = u16::from_be_bytes([payload[2], payload[3]]);
    if !known_method(class, method) {
        return Err(AmqpError::not_implemented(format!(
            "unknown method: class {class}, method {method}"
        ))
        .on(class, method));
    }
    // amq-protocol drops basic.qos prefetch_size, which RabbitMQ refuses when non-zero.
    if class == 60 && method == 10 && payload.len() >= 8 {
        let prefetch_size = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        if prefetch_size != 0 {
            return Ok(Frame::Refused(
                channel,
                AmqpError::not_implemented(format!("prefetch_size!=0 ({prefetch_size})"))
                    .on(60, 10),
            ));
        }
    }
    if nesting::check_method(class, method, payload).is_err() {
        return Ok(Frame::Refused(channel, too_deep().on(class, method)));
    }
    match parse_class(payload) {
        Ok((&[], m)) => Ok(Frame::Method(channel, Box::new(m))),
        _ => Err(AmqpError::frame_error(format!(
            "cannot decode method class {class}, method {method}"
        ))
        .on(class, method)),
    }
}

/// A field table nested past `nesting::MAX_DEPTH`: refused before it is parsed.
fn too_deep() -> AmqpError {
    AmqpError::precondition_failed(format!(
        "field table nested deeper than {} levels",
        nesting::MAX_DEPTH
    ))
}

/// Append a method frame.
pub fn write_method(out: &mut Vec<u8>, channel: u16, method: AMQPClass) {
    let frame = AMQPFrame::Method(channel, method);
    let buf = std::mem::take(out);
    *out = match gen_frame(&frame)(WriteContext::from(buf)) {
        Ok(ctx) => ctx.into_inner().0,
        // Generation into a Vec cannot run out of space; a failure means a bug in our values.
        Err(e) => {
            tracing::error!(error = %e, "failed to encode method frame");
            Vec::new()
        }
    };
}

/// Encode properties (for messages whose properties the broker changed).
pub fn encode_properties(properties: &AMQPProperties) -> Vec<u8> {
    match gen_properties(properties)(WriteContext::from(Vec::new())) {
        Ok(ctx) => ctx.into_inner().0,
        Err(e) => {
            tracing::error!(error = %e, "failed to encode properties");
            vec![0, 0]
        }
    }
}

/// Append a content header (properties already in their AMQP encoding, sent verbatim) and its
/// body frames, split to fit `frame_max`.
pub fn write_content(
    out: &mut Vec<u8>,
    channel: u16,
    raw_properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    let size = (12 + raw_properties.len()) as u32;
    out.push(FRAME_HEADER);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&60u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(raw_properties);
    out.push(FRAME_END);
    let chunk = if frame_max == 0 {
        usize::MAX
    } else {
        (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
    };
    for piece in body.chunks(chunk) {
        out.push(FRAME_BODY);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(piece.len() as u32).to_be_bytes());
        out.extend_from_slice(piece);
        out.push(FRAME_END);
    }
}

fn put_shortstr(out: &mut Vec<u8>, s: &str) {
    // Callers pass names that arrived as shortstrs (at most 255 bytes); clamp anyway.
    let b = &s.as_bytes()[..crate::names::fit(s, 255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

/// Append a basic.deliver method frame. Written by hand because it goes out once per message:
/// amq-protocol's generator would allocate three strings and a flags vector each time
/// (ARCHITECTURE.md, "Decisions"); `deliver_round_trips` checks it against amq-protocol's parser.
pub fn write_deliver(
    out: &mut Vec<u8>,
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
) {
    let start = out.len();
    out.push(FRAME_METHOD);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&[0, 60, 0, 60]);
    put_shortstr(out, consumer_tag);
    out.extend_from_slice(&delivery_tag.to_be_bytes());
    out.push(u8::from(redelivered));
    put_shortstr(out, exchange);
    put_shortstr(out, routing_key);
    let size = (out.len() - start - 7) as u32;
    out[start + 3..start + 7].copy_from_slice(&size.to_be_bytes());
    out.push(FRAME_END);
}

/// One frame around an already encoded payload (tools and tests that speak raw AMQP).
pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + FRAME_OVERHEAD);
    f.push(kind);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

pub fn write_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::parse_frame;
    use amq_protocol::protocol::basic;

    #[test]
    fn content_round_trips_through_amq_protocol() {
        let props = AMQPProperties::default()
            .with_content_type("text/plain".into())
            .with_delivery_mode(2);
        let mut out = Vec::new();
        write_content(&mut out, 3, &encode_properties(&props), &[7u8; 10000], 4096);
        let (rest, frame) = parse_frame(&out[..]).expect("header parses");
        match frame {
            AMQPFrame::Header(3, h) => {
                assert_eq!(h.body_size, 10000);
                assert_eq!(h.properties, props);
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut rest = rest;
        let mut total = 0;
        while !rest.is_empty() {
            let (r, f) = parse_frame(rest).expect("body parses");
            match f {
                AMQPFrame::Body(3, b) => {
                    assert!(b.len() <= 4096 - 8);
                    total += b.len();
                }
                other => panic!("unexpected {other:?}"),
            }
            rest = r;
        }
        assert_eq!(total, 10000);
    }

    #[test]
    fn deliver_round_trips() {
        let mut out = Vec::new();
        write_deliver(&mut out, 7, "amq.ctag-x", 1 << 40, true, "ex", "rk.a");
        let (rest, frame) = parse_frame(&out[..]).expect("parses");
        assert!(rest.is_empty());
        let expected = AMQPFrame::Method(
            7,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: "amq.ctag-x".into(),
                delivery_tag: 1 << 40,
                redelivered: true,
                exchange: "ex".into(),
                routing_key: "rk.a".into(),
            })),
        );
        assert_eq!(frame, expected);
    }

    #[test]
    fn decode_checks_size_before_buffering() {
        let mut buf = BytesMut::from(&[1u8, 0, 1, 0, 1, 0, 0][..]);
        let err = decode(&mut buf, 4096).expect_err("too large");
        assert_eq!(err.code(), 501);
    }

    #[test]
    fn decode_method_and_bad_end() {
        let mut out = Vec::new();
        write_method(
            &mut out,
            1,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: 5,
                multiple: true,
            })),
        );
        let mut buf = BytesMut::from(&out[..]);
        match decode(&mut buf, 4096) {
            Ok(Some(Frame::Method(1, m))) => {
                assert!(matches!(*m, AMQPClass::Basic(basic::AMQPMethod::Ack(_))))
            }
            other => panic!("unexpected {other:?}"),
        }
        let last = out.len() - 1;
        out[last] = 0;
        let mut buf = BytesMut::from(&out[..]);
        assert_eq!(decode(&mut buf, 4096).map(|_| ()).unwrap_err().code(), 501);
    }

    #[test]
    fn unknown_method_is_540_and_type_is_501() {
        let mut buf = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 4, 0, 99, 0, 1, FRAME_END][..]);
        assert_eq!(decode(&mut buf, 4096).unwrap_err().code(), 540);
        let mut buf = BytesMut::from(&[9u8, 0, 0, 0, 0, 0, 0, FRAME_END][..]);
        assert_eq!(decode(&mut buf, 4096).unwrap_err().code(), 501);
    }
}
