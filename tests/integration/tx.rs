//! Transactions: publishes and acks take effect on commit only.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;

#[tokio::test]
async fn publishes_wait_for_commit() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let (_c2, observer) = channel().await;
    ch.tx_select().await.expect("select");
    publish(&ch, "", &q, b"1").await;
    publish(&ch, "", &q, b"2").await;
    ch.tx_rollback().await.expect("rollback");
    publish(&ch, "", &q, b"3").await;
    ch.tx_commit().await.expect("commit");
    let _ = observer;
    assert_eq!(drain(&ch, &q).await, vec!["3"]);
}

#[tokio::test]
async fn acks_wait_for_commit_and_rollback_restores_them() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"a").await;
    publish(&ch, "", &q, b"b").await;
    ch.tx_select().await.expect("select");
    let a = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a");
    let b = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("b");
    ch.basic_ack(a.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack a");
    ch.tx_commit().await.expect("commit");
    ch.basic_ack(b.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack b");
    ch.tx_rollback().await.expect("rollback");
    // b's ack was rolled back: it is outstanding again and comes back on recover.
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover");
    ch.tx_commit().await.expect("commit");
    assert_eq!(drain(&ch, &q).await, vec!["b"]);
}

#[tokio::test]
async fn tx_and_confirm_modes_exclude_each_other() {
    let (c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let e = assert_code(ch.tx_select().await, 406);
    assert!(
        text(&e).contains("cannot switch from confirm to tx mode"),
        "{}",
        text(&e)
    );
    let ch = c.create_channel().await.expect("ch");
    ch.tx_select().await.expect("tx");
    let e = assert_code(
        ch.confirm_select(ConfirmSelectOptions::default()).await,
        406,
    );
    assert!(
        text(&e).contains("cannot switch from tx to confirm mode"),
        "{}",
        text(&e)
    );
}

#[tokio::test]
async fn commit_without_select_is_406() {
    let (c, ch) = channel().await;
    let e = assert_code(ch.tx_commit().await, 406);
    assert!(
        text(&e).contains("channel is not transactional"),
        "{}",
        text(&e)
    );
    let ch = c.create_channel().await.expect("ch");
    assert_code(ch.tx_rollback().await, 406);
}

#[tokio::test]
async fn tx_commit_applies_nack_and_reject() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"a").await;
    publish(&ch, "", &q, b"b").await;
    ch.tx_select().await.expect("tx");
    let a = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a");
    let b = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("b");
    ch.basic_reject(a.delivery_tag, BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    ch.basic_ack(b.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.tx_commit().await.expect("commit");
    assert_eq!(drain(&ch, &q).await, vec!["a"]);
}
