//! The services start, answer, survive what they should and fail over for real.

use pushhub_testkit::{RedisCluster, RedisOptions, RedisServer, SentinelGroup};

#[test]
fn a_server_with_an_append_only_file_keeps_its_data_across_kill_9() {
    let Some(mut server) = RedisServer::start_with(RedisOptions {
        aof: true,
        ..RedisOptions::default()
    }) else {
        return;
    };
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    server.kill();
    assert!(server.cli(&["PING"]).contains("refused"));
    server.restart();
    assert_eq!(server.cli(&["GET", "k"]), "v");
}

#[test]
fn sentinels_fail_the_master_over_to_the_replica() {
    let Some(group) = SentinelGroup::start() else {
        return;
    };
    let first = group.master_port();
    assert!(group.server(first).is_some());
    assert!(group.url().starts_with("redis-sentinel://127.0.0.1:"));
    let second = group.failover();
    assert_ne!(first, second);
    assert!(group.server(second).is_some());
}

#[test]
fn a_cluster_of_three_masters_serves_every_slot() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let node = &cluster.nodes()[0];
    assert!(node
        .cli(&["CLUSTER", "INFO"])
        .contains("cluster_slots_assigned:16384"));
    assert!(cluster.url().starts_with("redis-cluster://"));
}
