//! Message content on the wire: bodies split over many frames, and empty bodies.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;

#[tokio::test]
async fn large_message_spans_many_frames() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let body: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    publish(&ch, "", &q, &body).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("m");
    assert_eq!(m.delivery.data, body);
}

#[tokio::test]
async fn empty_body_round_trips() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"").await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("m");
    assert!(m.delivery.data.is_empty());
}
