//! What the users service offers the timeline service: username lookup for mentions,
//! the streamed ids of the accounts one follows, the per-viewer exclusions, and the
//! statuses counter kept from the timeline's `status.*` events. Driven through the
//! service (and its gRPC adapter) on a real Postgres and Redis; the last test runs the
//! whole service and feeds it through a real outbox relay and Redis stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use prost::Message as _;
use rookery_kit::{
    cache::CacheHub,
    config::DatabaseConfig,
    db::Db,
    events::{self, Event, Outbox},
    redis::Redis,
    testing::{self, StatementCounter, TestDatabase},
};
use rookery_proto::{
    timeline::v1::{StatusEvent, Visibility},
    users::v1::{self as pb, users_client::UsersClient, users_server::Users as _},
};
use rookery_users::{Config, Error, grpc::UsersGrpc, service::Users};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Request;

/// A migrated database, its Redis prefix and the service's configuration.
struct Env {
    db: TestDatabase,
    config: Config,
    redis: Redis,
}

async fn env() -> Env {
    let db = testing::database("users").await.unwrap();
    let config = Config::for_tests(&db.url, &testing::redis_url(), &testing::redis_prefix());
    rookery_users::migrate(&config).await.unwrap();
    let redis = Redis::new(&config.redis).unwrap();
    Env { db, config, redis }
}

impl Env {
    /// One replica of the service: its own process-local cache tier, listening for the
    /// other replicas' invalidations.
    async fn replica(&self, shutdown: &CancellationToken) -> Arc<Users> {
        let db = Db::connect_lazy(&self.config.database).unwrap();
        let hub = CacheHub::new(Some(self.redis.clone()));
        hub.spawn_listener(shutdown.clone());
        hub.subscribed().await;
        Arc::new(
            rookery_users::build_service(&self.config, &db, &self.redis, hub, Outbox::new("users"))
                .unwrap(),
        )
    }

    /// Runs `sql` as the superuser (schema `users` on the search path).
    async fn admin(&self, sql: &str) {
        let mut conn = PgConnection::connect(&self.db.admin_url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("SET search_path = users; {sql}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    /// Creates accounts (no credentials: the graph and the counters do not need them).
    async fn accounts(&self, usernames: &[&str]) -> Vec<i64> {
        let pool = Db::connect_lazy(&DatabaseConfig::for_url(&self.db.url)).unwrap();
        let mut ids = Vec::new();
        for name in usernames {
            let id: i64 =
                sqlx::query_scalar("INSERT INTO accounts (username) VALUES ($1) RETURNING id")
                    .bind(name)
                    .fetch_one(pool.primary())
                    .await
                    .unwrap();
            ids.push(id);
        }
        ids
    }
}

fn pair(account_id: i64, target_id: i64) -> pb::PairRequest {
    pb::PairRequest {
        account_id,
        target_id,
    }
}

async fn follow(users: &Users, account_id: i64, target_id: i64) {
    users
        .follow(pb::FollowRequest {
            account_id,
            target_id,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Every id `FollowerIds` streams through the gRPC adapter, chunk by chunk.
async fn streamed(users: &Arc<Users>, req: pb::FollowerIdsRequest) -> Vec<Vec<i64>> {
    let grpc = UsersGrpc(users.clone());
    let stream = grpc
        .follower_ids(Request::new(req))
        .await
        .unwrap()
        .into_inner();
    stream.map(|chunk| chunk.unwrap().ids).collect().await
}

#[tokio::test]
async fn lookup_accounts_by_username() {
    let env = env().await;
    let shutdown = CancellationToken::new();
    let users = env.replica(&shutdown).await;
    let ids = env.accounts(&["Alice_Mixed", "bob", "carol"]).await;

    let counter = StatementCounter::new(&env.db).await.unwrap();
    let before = counter.total().await.unwrap();
    let names = [
        "@alice_MIXED",
        "BOB",
        "nobody",
        "bob@rookery.test",
        "@carol@elsewhere.test",
        "",
        "@",
    ];
    let found = users
        .lookup_accounts(&names.map(str::to_owned))
        .await
        .unwrap();
    assert_eq!(
        counter.since(before).await.unwrap(),
        1,
        "{:#?}",
        counter.breakdown().await.unwrap()
    );
    // Asked order, each once; unknown and remote names left out.
    let got: Vec<(i64, &str)> = found.iter().map(|a| (a.id, a.username.as_str())).collect();
    assert_eq!(got, [(ids[0], "Alice_Mixed"), (ids[1], "bob")]);

    // Through the adapter too.
    let grpc = UsersGrpc(users.clone());
    let res = grpc
        .lookup_accounts(Request::new(pb::LookupAccountsRequest {
            usernames: vec!["CAROL".to_owned()],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.accounts.len(), 1);
    assert_eq!(res.accounts[0].id, ids[2]);

    // Nothing to look up: no statement at all.
    let before = counter.total().await.unwrap();
    assert!(users.lookup_accounts(&[]).await.unwrap().is_empty());
    assert_eq!(counter.since(before).await.unwrap(), 0);

    // At most 100 names.
    let many: Vec<String> = (0..101).map(|i| format!("user{i}")).collect();
    assert!(matches!(
        users.lookup_accounts(&many).await,
        Err(Error::InvalidArgument(_))
    ));
    let status = grpc
        .lookup_accounts(Request::new(pb::LookupAccountsRequest { usernames: many }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let hundred: Vec<String> = (0..100).map(|i| format!("nobody{i}")).collect();
    assert!(users.lookup_accounts(&hundred).await.unwrap().is_empty());
    shutdown.cancel();
}

#[tokio::test]
async fn following_ids_are_streamed() {
    let env = env().await;
    let shutdown = CancellationToken::new();
    let users = env.replica(&shutdown).await;
    let ids = env.accounts(&["viewer", "a", "b", "c", "fan"]).await;
    let (viewer, followed, fan) = (ids[0], &ids[1..4], ids[4]);
    // Followed in this order; the stream is in follow order.
    for target in [followed[2], followed[0], followed[1]] {
        follow(&users, viewer, target).await;
    }
    follow(&users, fan, viewer).await;

    let chunks = streamed(
        &users,
        pb::FollowerIdsRequest {
            account_id: viewer,
            following: true,
            reblogs_only: false,
            notify_only: false,
            // Ignored with `following`.
            only_active: true,
        },
    )
    .await;
    assert_eq!(chunks, [vec![followed[2], followed[0], followed[1]]]);
    // Followers are unchanged.
    let chunks = streamed(
        &users,
        pb::FollowerIdsRequest {
            account_id: viewer,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(chunks, [vec![fan]]);
    // Someone who follows nobody: an empty stream.
    let chunks = streamed(
        &users,
        pb::FollowerIdsRequest {
            account_id: followed[0],
            following: true,
            reblogs_only: false,
            notify_only: false,
            only_active: false,
        },
    )
    .await;
    assert!(chunks.is_empty(), "{chunks:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn following_ids_span_chunks() {
    let env = env().await;
    let shutdown = CancellationToken::new();
    let users = env.replica(&shutdown).await;
    env.admin(
        "INSERT INTO accounts (id, username) SELECT i, 'user' || i FROM generate_series(1, 2501) i;
         INSERT INTO follows (account_id, target_account_id)
         SELECT 1, i FROM generate_series(2, 2501) i;",
    )
    .await;
    let chunks = streamed(
        &users,
        pb::FollowerIdsRequest {
            account_id: 1,
            following: true,
            reblogs_only: false,
            notify_only: false,
            only_active: false,
        },
    )
    .await;
    let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    let all: Vec<i64> = chunks.concat();
    assert_eq!(all, (2..=2501).collect::<Vec<i64>>());
    shutdown.cancel();
}

#[tokio::test]
async fn exclusions_list_blocks_both_ways_and_active_mutes() {
    let env = env().await;
    let shutdown = CancellationToken::new();
    let users = env.replica(&shutdown).await;
    let ids = env
        .accounts(&[
            "viewer", "blocked", "blocker", "muted", "quiet", "expired", "mutual", "other",
        ])
        .await;
    let [
        viewer,
        blocked,
        blocker,
        muted,
        quiet,
        expired,
        mutual,
        other,
    ] = ids[..]
    else {
        unreachable!()
    };
    let grpc = UsersGrpc(users.clone());
    let exclusions = || async {
        grpc.exclusions(Request::new(pb::ExclusionsRequest { account_id: viewer }))
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(exclusions().await, pb::FilterAccountsResponse::default());

    users.block(pair(viewer, blocked)).await.unwrap();
    // Seen at once (read on the primary).
    assert_eq!(exclusions().await.blocked, [blocked]);
    users.block(pair(blocker, viewer)).await.unwrap();
    users.block(pair(viewer, mutual)).await.unwrap();
    users.block(pair(mutual, viewer)).await.unwrap();
    let mute = |target_id, notifications| pb::MuteRequest {
        account_id: viewer,
        target_id,
        notifications,
        duration_seconds: 0,
    };
    users.mute(mute(muted, None)).await.unwrap();
    users.mute(mute(quiet, Some(false))).await.unwrap();
    users.mute(mute(expired, None)).await.unwrap();
    // A mute that ran out (and was not swept yet) is no mute.
    env.admin(&format!(
        "UPDATE mutes SET expires_at = now() - interval '1 minute' WHERE target_account_id = {expired}"
    ))
    .await;
    // Edges of others are not the viewer's business.
    users.block(pair(other, blocked)).await.unwrap();
    users
        .mute(pb::MuteRequest {
            account_id: other,
            target_id: viewer,
            notifications: None,
            duration_seconds: 0,
        })
        .await
        .unwrap();

    let counter = StatementCounter::new(&env.db).await.unwrap();
    let before = counter.total().await.unwrap();
    let got = exclusions().await;
    assert_eq!(
        counter.since(before).await.unwrap(),
        1,
        "{:#?}",
        counter.breakdown().await.unwrap()
    );
    let sorted = |mut v: Vec<i64>| {
        v.sort_unstable();
        v
    };
    // Each once, sorted: the mutual block is listed once.
    assert_eq!(got.blocked, sorted(vec![blocked, blocker, mutual]));
    assert_eq!(got.muted, sorted(vec![muted, quiet]));
    assert_eq!(got.muted_notifications, [muted]);

    users.unblock(pair(viewer, blocked)).await.unwrap();
    users.unmute(pair(viewer, quiet)).await.unwrap();
    let got = exclusions().await;
    assert_eq!(got.blocked, sorted(vec![blocker, mutual]));
    assert_eq!(got.muted, [muted]);
    shutdown.cancel();
}

/// A `status.*` event as the timeline service's relay writes it.
fn status_event(
    id: &str,
    topic: &str,
    account_id: i64,
    visibility: Visibility,
    created_at_ms: i64,
) -> Event {
    Event {
        id: id.to_owned(),
        entry_id: "0-0".to_owned(),
        topic: topic.to_owned(),
        aggregate_id: Some(account_id),
        traceparent: None,
        payload: StatusEvent {
            status_id: 1,
            account_id,
            visibility: visibility as i32,
            created_at_ms,
            ..Default::default()
        }
        .encode_to_vec(),
    }
}

async fn account(users: &Users, id: i64) -> pb::Account {
    users.get_accounts(&[id]).await.unwrap().pop().unwrap()
}

/// Polls `check` until it holds, for up to five seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn status_events_move_statuses_count_once() {
    let env = env().await;
    let shutdown = CancellationToken::new();
    let users = env.replica(&shutdown).await;
    let other_replica = env.replica(&shutdown).await;
    let ids = env.accounts(&["author", "reader"]).await;
    let (author, reader) = (ids[0], ids[1]);
    let t1 = 1_700_000_000_123;
    let t0 = t1 - 60_000;

    // Both replicas hold the account in their caches, both tiers.
    let fresh = account(&users, author).await;
    assert_eq!((fresh.statuses_count, fresh.last_status_at_ms), (0, None));
    assert_eq!(account(&other_replica, author).await.statuses_count, 0);

    let created = status_event(
        "timeline:1",
        "status.created",
        author,
        Visibility::Public,
        t1,
    );
    users.apply_timeline_event(&created).await.unwrap();
    // Redelivered: no effect.
    users.apply_timeline_event(&created).await.unwrap();
    let a = account(&users, author).await;
    assert_eq!((a.statuses_count, a.last_status_at_ms), (1, Some(t1)));
    // The other replica drops its copy too.
    eventually("the other replica's count", || async {
        account(&other_replica, author).await.statuses_count == 1
    })
    .await;

    // Direct statuses are not counted, and nothing but the author moves.
    let direct = status_event(
        "timeline:2",
        "status.created",
        author,
        Visibility::Direct,
        t1 + 1000,
    );
    users.apply_timeline_event(&direct).await.unwrap();
    // An older status arriving late counts but does not move last_status_at back.
    let late = status_event(
        "timeline:3",
        "status.created",
        author,
        Visibility::Unlisted,
        t0,
    );
    users.apply_timeline_event(&late).await.unwrap();
    let both = users.get_accounts(&[author, reader]).await.unwrap();
    assert_eq!(both[0].statuses_count, 2);
    assert_eq!(both[0].last_status_at_ms, Some(t1));
    assert_eq!(
        (both[1].statuses_count, both[1].last_status_at_ms),
        (0, None)
    );

    // Deletion: once per event, direct ones not counted.
    let deleted = status_event(
        "timeline:4",
        "status.deleted",
        author,
        Visibility::Private,
        t0,
    );
    users.apply_timeline_event(&deleted).await.unwrap();
    users.apply_timeline_event(&deleted).await.unwrap();
    assert_eq!(account(&users, author).await.statuses_count, 1);
    let deleted_direct = status_event(
        "timeline:5",
        "status.deleted",
        author,
        Visibility::Direct,
        t1 + 1000,
    );
    users.apply_timeline_event(&deleted_direct).await.unwrap();
    // Other topics and undecodable payloads are acknowledged and ignored.
    let updated = status_event(
        "timeline:6",
        "status.updated",
        author,
        Visibility::Public,
        t1,
    );
    users.apply_timeline_event(&updated).await.unwrap();
    let mut garbage = status_event(
        "timeline:7",
        "status.created",
        author,
        Visibility::Public,
        t1,
    );
    garbage.payload = vec![0xff, 0xff, 0xff];
    users.apply_timeline_event(&garbage).await.unwrap();
    let a = account(&users, author).await;
    assert_eq!((a.statuses_count, a.last_status_at_ms), (1, Some(t1)));

    // The count never goes below zero.
    for n in 8..11 {
        let e = status_event(
            &format!("timeline:{n}"),
            "status.deleted",
            author,
            Visibility::Public,
            t1,
        );
        users.apply_timeline_event(&e).await.unwrap();
    }
    assert_eq!(account(&users, author).await.statuses_count, 0);
    // An unknown author is no error (the event is done with).
    let orphan = status_event(
        "timeline:11",
        "status.created",
        author + reader + 1,
        Visibility::Public,
        t1,
    );
    users.apply_timeline_event(&orphan).await.unwrap();
    shutdown.cancel();
}

/// The whole path: the timeline service's outbox relay puts `status.created` on its
/// stream, which need not exist when the users service starts; the running service's
/// consumer applies it and GetAccounts over gRPC shows the new count.
#[tokio::test]
async fn running_service_consumes_timeline_events() {
    let env = env().await;
    let ids = env.accounts(&["poster"]).await;
    let poster = ids[0];

    let shutdown = CancellationToken::new();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", grpc.local_addr().unwrap());
    let server = tokio::spawn(rookery_users::run(
        grpc,
        http,
        env.config.clone(),
        shutdown.clone(),
    ));
    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = UsersClient::new(channel);
    let get = pb::GetAccountsRequest { ids: vec![poster] };
    let before = client.get_accounts(get.clone()).await.unwrap().into_inner();
    assert_eq!(before.accounts[0].statuses_count, 0);

    // The timeline service's side: its own schema with an outbox, same Redis prefix.
    let timeline_db = testing::database("timeline").await.unwrap();
    let timeline = Db::connect_lazy(&DatabaseConfig::for_url(&timeline_db.url)).unwrap();
    events::migrate(timeline.primary()).await.unwrap();
    let outbox = Outbox::new("timeline");
    let mut tx = timeline.primary().begin().await.unwrap();
    for (topic, visibility) in [
        ("status.created", Visibility::Public),
        ("status.created", Visibility::Direct),
        ("favourite.created", Visibility::Public),
        ("status.created", Visibility::Public),
    ] {
        let payload = StatusEvent {
            status_id: 1,
            account_id: poster,
            visibility: visibility as i32,
            created_at_ms: 1_700_000_000_000,
            ..Default::default()
        };
        outbox
            .enqueue(&mut tx, topic, Some(poster), &payload.encode_to_vec())
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        events::relay_once(timeline.primary(), &env.redis, "timeline")
            .await
            .unwrap(),
        4
    );

    eventually("statuses_count 2 over gRPC", || {
        let mut client = client.clone();
        let get = get.clone();
        async move {
            let res = client.get_accounts(get).await.unwrap().into_inner();
            res.accounts[0].statuses_count == 2
        }
    })
    .await;
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
