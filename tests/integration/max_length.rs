//! Length limits: x-max-length and x-max-length-bytes with drop-head, reject-publish and
//! reject-publish-dlx.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[tokio::test]
async fn max_length_drop_head_dead_letters_maxlen() {
    let (_c, ch) = channel().await;
    let dlq = declare_args(&ch, &uniq("dlq"), FieldTable::default()).await;
    let q = declare_args(
        &ch,
        &uniq("maxlen"),
        table(&[
            ("x-max-length", int(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]),
    )
    .await;
    for b in ["1", "2", "3", "4"] {
        publish(&ch, "", &q, b.as_bytes()).await;
    }
    assert_eq!(drain(&ch, &q).await, vec!["3", "4"]);
    let d = get_msg(&ch, &dlq).await.expect("dead-lettered");
    assert_eq!(d.delivery.data, b"1");
    assert_eq!(str_of(&death(&d.delivery, 0), "reason"), "maxlen");
    cleanup(&ch, &[&q, &dlq]).await;
}

#[tokio::test]
async fn max_length_bytes() {
    let (_c, ch) = channel().await;
    let q = declare_args(
        &ch,
        &uniq("maxbytes"),
        table(&[("x-max-length-bytes", int(10))]),
    )
    .await;
    for b in ["aaaa", "bbbb", "cccc"] {
        publish(&ch, "", &q, b.as_bytes()).await;
    }
    assert_eq!(drain(&ch, &q).await, vec!["bbbb", "cccc"]);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn reject_publish_nacks_confirms() {
    let (_c, ch) = channel().await;
    let dlq = declare_args(&ch, &uniq("dlq"), FieldTable::default()).await;
    let q = declare_args(
        &ch,
        &uniq("rejpub"),
        table(&[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish-dlx")),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let mut results = Vec::new();
    for b in ["1", "2", "3"] {
        let c = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                b.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("pub");
        results.push(c.await.expect("confirm").is_ack());
    }
    assert_eq!(results, vec![true, false, false]);
    assert_eq!(drain(&ch, &q).await, vec!["1"]);
    assert_eq!(
        drain(&ch, &dlq).await,
        vec!["2", "3"],
        "reject-publish-dlx dead-letters the refused"
    );
    // Without confirms the refused message is dropped silently.
    let (_c2, ch2) = channel().await;
    let q2 = declare_args(
        &ch2,
        &uniq("rejpub2"),
        table(&[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish")),
        ]),
    )
    .await;
    publish(&ch2, "", &q2, b"a").await;
    publish(&ch2, "", &q2, b"b").await;
    assert_eq!(drain(&ch2, &q2).await, vec!["a"]);
    cleanup(&ch2, &[&q, &dlq, &q2]).await;
}
