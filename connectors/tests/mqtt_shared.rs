//! Named MQTT connections against the machine's Mosquitto: routing by topic filter over one
//! client, and a stalled subscriber that must not hold the others back.

use std::time::{Duration, Instant};

use quiver_connectors::mqtt::shared::{SLOW_WAIT, SUBSCRIBER_QUEUE, Subscription};
use quiver_connectors::mqtt::{MqttConnectionConfig, MqttConnections};
use rumqttc::QoS;
use serde_json::json;

#[path = "support/mqtt.rs"]
mod support;
use support::{TestClient, unique};

fn connections(id: &str) -> MqttConnections {
    let config = MqttConnectionConfig::parse(
        json!({"server": "tcp://127.0.0.1:1883"})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    let all = MqttConnections::default();
    all.put(id, config, false).unwrap();
    all
}

async fn wait_connected(all: &MqttConnections, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !all.status(id).unwrap().connection.connected {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Receives until `n` messages arrived or `within` passed; returns the topics.
async fn take(sub: &mut Subscription, n: usize, within: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(msg)) => got.push(msg.topic.to_string()),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_routes_each_topic_to_its_filters() {
    let all = connections("routes");
    let lease = all.lease("routes").unwrap();
    assert_eq!(all.status("routes").unwrap().users, 1);
    wait_connected(&all, "routes").await;
    let p = format!("shared/{}", unique());
    let mut exact = lease.subscribe(&format!("{p}/a"), QoS::AtLeastOnce);
    let mut plus = lease.subscribe(&format!("{p}/+/x"), QoS::AtLeastOnce);
    let mut hash = lease.subscribe(&format!("{p}/#"), QoS::AtLeastOnce);
    // The subscriptions go out asynchronously: publish until the widest one sees a message.
    let publisher = TestClient::start(1883, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher.publish(&format!("{p}/warmup"), "{}").await;
        if !take(&mut hash, 1, Duration::from_millis(200))
            .await
            .is_empty()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the subscriptions never took");
    }
    while !take(&mut hash, 1, Duration::from_millis(200))
        .await
        .is_empty()
    {}
    publisher.publish(&format!("{p}/a"), "{}").await;
    publisher.publish(&format!("{p}/k/x"), "{}").await;
    publisher.publish(&format!("{p}/k/y"), "{}").await;
    let wait = Duration::from_secs(2);
    assert_eq!(take(&mut exact, 2, wait).await, [format!("{p}/a")]);
    assert_eq!(take(&mut plus, 2, wait).await, [format!("{p}/k/x")]);
    assert_eq!(
        take(&mut hash, 4, wait).await,
        [format!("{p}/a"), format!("{p}/k/x"), format!("{p}/k/y")]
    );
    // In use: neither replaced nor deleted.
    assert!(all.remove("routes").is_err());
    drop((exact, plus, hash));
    drop(lease);
    assert_eq!(all.status("routes").unwrap().users, 0);
    assert!(all.remove("routes").unwrap());
    assert!(all.lease("routes").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_block_the_others() {
    let all = connections("stall");
    let lease = all.lease("stall").unwrap();
    wait_connected(&all, "stall").await;
    let topic = format!("shared/{}/t", unique());
    let _stalled = lease.subscribe(&topic, QoS::AtMostOnce);
    let mut live = lease.subscribe(&topic, QoS::AtMostOnce);
    let publisher = TestClient::start(1883, None);
    loop {
        publisher.publish(&topic, "warmup").await;
        if !take(&mut live, 1, Duration::from_millis(200))
            .await
            .is_empty()
        {
            break;
        }
    }
    while !take(&mut live, 1, Duration::from_millis(200))
        .await
        .is_empty()
    {}
    // More than the stalled subscriber's queue holds: it fills, the client waits SLOW_WAIT
    // once, then drops for the stalled one only.
    let n = SUBSCRIBER_QUEUE + 2000;
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let got = take(&mut live, n, Duration::from_secs(30)).await.len();
        (got, live)
    });
    for i in 0..n {
        publisher.publish(&topic, &i.to_string()).await;
    }
    let (got, _live) = reader.await.unwrap();
    let took = started.elapsed();
    // The stalled queue held at most SUBSCRIBER_QUEUE of the burst, minus the warm-ups.
    let dropped = all.status("stall").unwrap().dropped;
    println!(
        "{n} messages: live subscriber got {got} in {took:?}; {dropped} dropped for the stalled one"
    );
    assert_eq!(got, n, "the live subscriber gets every message");
    assert!(dropped >= 2000, "dropped {dropped}");
    assert!(
        took < SLOW_WAIT + Duration::from_secs(10),
        "the stall held the others back for {took:?}"
    );
}
