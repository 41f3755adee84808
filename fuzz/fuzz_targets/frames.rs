//! Arbitrary bytes through the frame codec, the content assembler and stored-property parsing:
//! nothing may panic, overflow the stack or allocate past what the frame announced.
#![no_main]

use amq_protocol::protocol::{basic, AMQPClass};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren::channel::{Assembler, Budget};
use warren::codec::{decode, Frame};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut assembler = Assembler::default();
    // Smaller than the size limit, so that both refusals are reached.
    let budget = Budget::new(1 << 19);
    for _ in 0..256 {
        match decode(&mut buf, 131_072) {
            Ok(Some(Frame::Method(_, m))) => {
                if let AMQPClass::Basic(basic::AMQPMethod::Publish(p)) = *m {
                    assembler.start(p);
                }
            }
            Ok(Some(Frame::Header(_, h, raw))) => {
                let _ = warren::message::Message::from_raw("", "", &raw, bytes::Bytes::new());
                if assembler.header(*h, raw, 1 << 20, &budget).is_err() {
                    assembler = Assembler::default();
                }
            }
            Ok(Some(Frame::Body(_, b))) => {
                if assembler.body(b).is_err() {
                    assembler = Assembler::default();
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    drop(assembler);
    assert_eq!(budget.in_use(), 0, "a finished or dropped body gave its budget back");
});
