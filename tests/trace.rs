//! One request, one trace: the gateway's and the users service's spans, exported over
//! OTLP by the real binaries to an in-process collector, share a trace id with the right
//! parent/child links (HTTP server span → gRPC client span → gRPC server span).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value as AnyValue,
    trace::v1::Span,
};
use rookery_e2e::{eventually, json_ok};
use tokio::process::{Child, Command};

/// Spans received, with the `service.name` of the process that sent them.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The workspace's built binaries live next to this test's `deps/` folder; `make test`
/// builds them (`cargo build --bins`) before running the suite.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --bins` first",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_binary(name: &str, args: &[&str], env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(binary(name));
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Export quickly; the batch is flushed on shutdown anyway.
    cmd.env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("RUST_LOG", "warn");
    cmd.spawn().unwrap()
}

async fn terminate(mut child: Child) {
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    assert!(
        exit.is_ok_and(|s| s.is_ok_and(|s| s.success())),
        "{pid} did not exit cleanly on SIGTERM"
    );
}

#[tokio::test]
async fn one_request_is_one_trace_across_gateway_and_users() {
    // The collector.
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    // The real binaries, with their own database and Redis prefix.
    let db = rookery_kit::testing::database("users").await.unwrap();
    let prefix = rookery_kit::testing::redis_prefix();
    let (grpc, ops, http) = (free_port(), free_port(), free_port());
    let common = [
        ("USERS_DATABASE_URL", db.url.clone()),
        ("REDIS_URL", rookery_kit::testing::redis_url()),
        ("REDIS_PREFIX", prefix.clone()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.clone()),
    ];
    let migrate = spawn_binary("rookery-users", &["migrate"], &common)
        .wait()
        .await
        .unwrap();
    assert!(migrate.success());
    let mut users_env = common.to_vec();
    users_env.push(("USERS_GRPC_ADDR", format!("127.0.0.1:{grpc}")));
    users_env.push(("USERS_HTTP_ADDR", format!("127.0.0.1:{ops}")));
    let users = spawn_binary("rookery-users", &[], &users_env);
    let mut gateway_env = common.to_vec();
    gateway_env.push(("GATEWAY_ADDR", format!("127.0.0.1:{http}")));
    gateway_env.push(("USERS_URL", format!("http://127.0.0.1:{grpc}")));
    let gateway = spawn_binary("rookery-gateway", &[], &gateway_env);
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(20), || async {
        let r = client.get(format!("{base}/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "stack did not become ready");

    // Sign up, then the one authenticated request under test.
    let app = json_ok(
        client
            .post(format!("{base}/api/v1/apps"))
            .form(&[
                ("client_name", "trace"),
                ("redirect_uris", "urn:ietf:wg:oauth:2.0:oob"),
                ("scopes", "read write"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let app_token = json_ok(
        client
            .post(format!("{base}/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", app["client_id"].as_str().unwrap()),
                ("client_secret", app["client_secret"].as_str().unwrap()),
                ("scope", "read write"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let user_token = json_ok(
        client
            .post(format!("{base}/api/v1/accounts"))
            .bearer_auth(&app_token)
            .form(&[
                ("username", "tracer"),
                ("email", "tracer@example.com"),
                ("password", "correct horse"),
                ("agreement", "true"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    json_ok(
        client
            .get(format!("{base}/api/v1/accounts/verify_credentials"))
            .bearer_auth(&user_token)
            .send()
            .await
            .unwrap(),
    )
    .await;

    // Graceful shutdown flushes what is still buffered.
    terminate(gateway).await;
    terminate(users).await;

    let spans = collector.0.lock().unwrap().clone();
    let root = spans
        .iter()
        .find(|(svc, s)| svc == "gateway" && s.name == "GET /api/v1/accounts/verify_credentials")
        .unwrap_or_else(|| {
            panic!(
                "no gateway span for verify_credentials among {:?}",
                names(&spans)
            )
        });
    let trace_id = &root.1.trace_id;
    assert!(
        root.1.parent_span_id.is_empty(),
        "the gateway starts the trace"
    );
    let in_trace: Vec<&(String, Span)> = spans
        .iter()
        .filter(|(_, s)| &s.trace_id == trace_id)
        .collect();
    let by_id: HashMap<&[u8], &(String, Span)> = in_trace
        .iter()
        .map(|e| (e.1.span_id.as_slice(), *e))
        .collect();

    // Every users-side server span of this trace hangs off a gateway client span of the
    // same RPC, which hangs off the HTTP span.
    let servers: Vec<_> = in_trace
        .iter()
        .filter(|(svc, s)| svc == "users" && s.name.starts_with("rookery.users.v1.Users/"))
        .collect();
    let methods: Vec<&str> = servers.iter().map(|(_, s)| s.name.as_str()).collect();
    assert!(
        methods.contains(&"rookery.users.v1.Users/Authenticate"),
        "{methods:?}"
    );
    assert!(
        methods.contains(&"rookery.users.v1.Users/GetAccounts"),
        "{methods:?}"
    );
    for (_, server) in &servers {
        let (client_svc, client_span) = by_id
            .get(server.parent_span_id.as_slice())
            .unwrap_or_else(|| panic!("{}: parent not in the trace", server.name));
        assert_eq!(client_svc, "gateway");
        assert_eq!(
            client_span.name, server.name,
            "client and server spans name the same RPC"
        );
        assert_eq!(client_span.kind, 3, "SPAN_KIND_CLIENT");
        assert_eq!(server.kind, 2, "SPAN_KIND_SERVER");
        // The client span descends from the HTTP request span.
        let mut cursor = client_span;
        while !cursor.parent_span_id.is_empty() && cursor.span_id != root.1.span_id {
            cursor = &by_id
                .get(cursor.parent_span_id.as_slice())
                .expect("broken parent chain")
                .1;
        }
        assert_eq!(cursor.span_id, root.1.span_id);
    }
}

fn names(spans: &[(String, Span)]) -> Vec<String> {
    spans
        .iter()
        .map(|(svc, s)| format!("{svc}:{}", s.name))
        .collect()
}
