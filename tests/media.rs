//! Media through the gateway: uploads (sync and background), what the pipeline keeps and
//! strips, serving (immutable, ETag, ranges, WebP negotiation), attachment to statuses
//! with one batched hydration call per page, refusals, and a restart mid-processing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{
    StatusCode,
    multipart::{Form, Part},
};
use rookery_e2e::*;
use serde_json::Value;

const JPEG: &[u8] = include_bytes!("fixtures/exif-gps-rotated.jpg");
const BOMB: &[u8] = include_bytes!("fixtures/bomb.png");
const CLIP: &[u8] = include_bytes!("fixtures/clip.mov");

/// `POST {path}` with `file` (and text fields) as multipart, as Mastodon clients send it.
async fn upload(
    stack: &Stack,
    path: &str,
    token: &str,
    file: &[u8],
    name: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    // The declared type is a lie on purpose: the pipeline goes by the bytes.
    let part = Part::bytes(file.to_vec())
        .file_name(name.to_owned())
        .mime_str("application/octet-stream")
        .unwrap();
    form = form.part("file", part);
    stack
        .http
        .post(format!("{}{path}", stack.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn json_status(res: reqwest::Response, status: StatusCode) -> Value {
    let got = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "body: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `GET /api/v1/media/:id` (206 while processing) until it answers 200.
async fn wait_processed(stack: &Stack, token: &str, id: &str) -> Value {
    let found = eventually(Duration::from_secs(60), || async {
        let res = stack.get(&format!("/api/v1/media/{id}"), Some(token)).await;
        match res.status() {
            StatusCode::OK => Some(res.json::<Value>().await.unwrap()),
            StatusCode::PARTIAL_CONTENT => None,
            other => panic!("unexpected {other}: {}", res.text().await.unwrap()),
        }
    })
    .await;
    found.unwrap_or_else(|| panic!("media {id} never finished processing"))
}

/// Path and query of a media URL the gateway serves.
fn local(url: &Value) -> String {
    let url = url.as_str().expect("a URL");
    let at = url.find("/system/media/").expect("served by the gateway");
    url[at..].to_owned()
}

async fn fetch(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = stack.http.get(format!("{}{path}", stack.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// `DELETE /api/v1/media/:id` as `token`; the status it got.
async fn delete_media(stack: &Stack, token: &str, id: &str) -> StatusCode {
    stack
        .http
        .delete(format!("{}/api/v1/media/{id}", stack.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn an_image_is_stripped_turned_upright_served_immutably_and_attached() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (token, _) = stack.account(&app, "painter").await;
    let (other, _) = stack.account(&app, "other").await;

    let media = json_status(
        upload(
            &stack,
            "/api/v2/media",
            &token,
            JPEG,
            "holiday.jpg",
            &[
                ("description", "a red and blue flag"),
                ("focus", "0.5,-0.5"),
            ],
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let id = media["id"].as_str().unwrap().to_owned();
    assert_eq!(media["type"], "image");
    assert_eq!(media["description"], "a red and blue flag");
    assert_eq!(media["meta"]["focus"]["x"], 0.5);
    assert_eq!(media["meta"]["focus"]["y"], -0.5);
    // EXIF orientation 6 applied: the 64x32 file is 32x64 upright.
    assert_eq!(media["meta"]["original"]["width"], 32, "{media}");
    assert_eq!(media["meta"]["original"]["height"], 64, "{media}");
    assert_eq!(media["meta"]["original"]["size"], "32x64");
    assert_eq!(media["blurhash"].as_str().unwrap().len(), 28, "{media}");

    // Served without the metadata (camera, GPS), immutable, with an ETag.
    let url = local(&media["url"]);
    let res = fetch(&stack, &url, &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), "image/jpeg");
    assert_eq!(
        header(&res, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let etag = header(&res, "etag");
    assert!(!etag.is_empty());
    let original = res.bytes().await.unwrap();
    assert_eq!(&original[..2], &[0xFF, 0xD8], "a JPEG");
    for secret in [&b"Exif"[..], b"RookeryCam", b"GPS"] {
        assert!(!contains(&original, secret), "{secret:?} leaked");
    }
    let preview = fetch(&stack, &local(&media["preview_url"]), &[]).await;
    assert_eq!(preview.status(), StatusCode::OK);
    assert!(!contains(&preview.bytes().await.unwrap(), b"Exif"));

    // Revalidation, ranges, WebP for browsers that take it.
    let res = fetch(&stack, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    let res = fetch(&stack, &url, &[("range", "bytes=0-9")]).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&res, "content-range"),
        format!("bytes 0-9/{}", original.len())
    );
    assert_eq!(res.bytes().await.unwrap(), original.slice(0..10));
    let res = fetch(&stack, &url, &[("range", "bytes=-4")]).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        res.bytes().await.unwrap(),
        original.slice(original.len() - 4..)
    );
    let past = format!("bytes={}-", original.len() + 10);
    let res = fetch(&stack, &url, &[("range", &past)]).await;
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&res, "content-range"),
        format!("bytes */{}", original.len())
    );
    let res = fetch(&stack, &url, &[("accept", "image/avif,image/webp,*/*")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), "image/webp");
    assert_eq!(header(&res, "vary"), "Accept");
    assert_ne!(header(&res, "etag"), etag);
    let webp = res.bytes().await.unwrap();
    assert!(&webp[..4] == b"RIFF" && &webp[8..12] == b"WEBP");
    // Uploads as received (with their metadata) are never served; nor is anything
    // outside the store.
    let prefix = url
        .trim_start_matches("/system/media/")
        .split('/')
        .next()
        .unwrap();
    for hidden in [
        format!("/system/media/incoming/{prefix}-file"),
        format!("/system/media/{prefix}/../incoming/{prefix}-file"),
        "/system/media/..%2F..%2Fetc%2Fpasswd".to_owned(),
    ] {
        let res = fetch(&stack, &hidden, &[]).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{hidden}");
    }

    // Someone else can neither see, change nor attach it.
    let res = stack
        .get(&format!("/api/v1/media/{id}"), Some(&other))
        .await;
    json_error(res, 404).await;
    let status = stack
        .post_form(
            "/api/v1/statuses",
            Some(&other),
            &[("status", "mine now"), ("media_ids[]", &id)],
        )
        .await;
    assert_eq!(
        json_ok(status).await["media_attachments"],
        serde_json::json!([])
    );

    // Attached to a status: rendered in it, in timelines, and no longer editable.
    let status = json_ok(
        stack
            .post_form(
                "/api/v1/statuses",
                Some(&token),
                &[("status", "look"), ("media_ids[]", &id)],
            )
            .await,
    )
    .await;
    let attached = &status["media_attachments"][0];
    assert_eq!(attached["id"], id.as_str());
    assert_eq!(attached["url"], media["url"]);
    assert_eq!(attached["meta"]["small"]["width"], 32);
    let status_id = status["id"].as_str().unwrap().to_owned();
    let home = eventually(Duration::from_secs(10), || async {
        let home = json_ok(stack.get("/api/v1/timelines/home", Some(&token)).await).await;
        (home[0]["id"] == status_id.as_str()).then_some(home)
    })
    .await
    .expect("the status reaches the home timeline");
    assert_eq!(home[0]["media_attachments"][0]["id"], id.as_str());
    // The media service learns of the attachment from the timeline's events. Probe with
    // an edit, which changes nothing here: a DELETE that came first would succeed.
    let in_use = eventually(Duration::from_secs(10), || async {
        let res = stack
            .http
            .put(format!("{}/api/v1/media/{id}", stack.base))
            .bearer_auth(&token)
            .form(&[("description", "a red and blue flag")])
            .send()
            .await
            .unwrap();
        (res.status() == StatusCode::UNPROCESSABLE_ENTITY).then_some(())
    })
    .await;
    assert!(in_use.is_some(), "the upload is never marked as used");
    assert_eq!(
        delete_media(&stack, &token, &id).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "attached media can still be deleted"
    );

    // Deleting the status frees the upload (delete and redraft), which may then go.
    let res = stack
        .http
        .delete(format!("{}/api/v1/statuses/{status_id}", stack.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let deleted = json_ok(res).await;
    assert_eq!(deleted["media_attachments"][0]["id"], id.as_str());
    let freed = eventually(Duration::from_secs(10), || async {
        (delete_media(&stack, &token, &id).await == StatusCode::OK).then_some(())
    })
    .await;
    assert!(
        freed.is_some(),
        "the upload of a deleted status stays in use"
    );
    let res = stack
        .get(&format!("/api/v1/media/{id}"), Some(&token))
        .await;
    json_error(res, 404).await;
    // Its files go with it.
    let gone = eventually(Duration::from_secs(10), || async {
        let res = fetch(&stack, &url, &[]).await;
        (res.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the files of a deleted upload are still served"
    );
}

#[tokio::test]
async fn bad_uploads_are_refused_quickly_and_clearly() {
    let stack = spawn_with_media(|c| {
        c.limits.image_bytes = 256 * 1024;
        c.video = false;
    })
    .await;
    let app = stack.create_app().await;
    let (token, _) = stack.account(&app, "mallory").await;

    // Not an image, whatever its name says.
    let res = upload(
        &stack,
        "/api/v2/media",
        &token,
        b"GIF? no, text",
        "cat.gif",
        &[],
    )
    .await;
    let e = json_error(res, 422).await;
    assert!(e["error"].as_str().unwrap().contains("content type"), "{e}");
    // A decompression bomb: refused from its header, without decoding.
    let started = Instant::now();
    let res = upload(&stack, "/api/v2/media", &token, BOMB, "bomb.png", &[]).await;
    let e = json_error(res, 422).await;
    assert!(e["error"].as_str().unwrap().contains("60000"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Over the image limit: 413, refused before the whole body is read.
    let mut big = JPEG[..4].to_vec();
    big.resize(2 * 1024 * 1024, 0);
    let res = upload(&stack, "/api/v2/media", &token, &big, "big.jpg", &[]).await;
    json_error(res, 413).await;
    // Video without ffmpeg (here: turned off) says so.
    let res = upload(&stack, "/api/v2/media", &token, CLIP, "clip.mov", &[]).await;
    let e = json_error(res, 422).await;
    assert!(e["error"].as_str().unwrap().contains("ffmpeg"), "{e}");
    // Bad fields, a missing file, a missing scope.
    for fields in [
        &[("focus", "3,0")][..],
        &[("description", &"x".repeat(1501))],
    ] {
        let res = upload(&stack, "/api/v2/media", &token, JPEG, "a.jpg", fields).await;
        json_error(res, 422).await;
    }
    let res = stack
        .http
        .post(format!("{}/api/v2/media", stack.base))
        .bearer_auth(&token)
        .multipart(Form::new().text("description", "no file"))
        .send()
        .await
        .unwrap();
    json_error(res, 422).await;
    let read_only = stack.app_token(&app, "read").await;
    let res = upload(&stack, "/api/v2/media", &read_only, JPEG, "a.jpg", &[]).await;
    assert!(
        matches!(res.status().as_u16(), 403 | 422),
        "{}",
        res.status()
    );
    // Nothing of that was kept: the next upload works and is the only one.
    let ok = json_status(
        upload(&stack, "/api/v1/media", &token, JPEG, "a.jpg", &[]).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ok["type"], "image");
    let pool = sqlx::PgPool::connect(&stack.media_db.admin_url)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM media.attachments")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn background_processing_answers_206_then_200_and_survives_a_restart() {
    let stack = spawn_with_media(|c| c.limits.sync_bytes = 0).await;
    let app = stack.create_app().await;
    let (token, _) = stack.account(&app, "filmmaker").await;

    // Over the in-request size: 202 without URLs, then 206 while processing, then 200.
    let media = json_status(
        upload(&stack, "/api/v2/media", &token, JPEG, "a.jpg", &[]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(media["url"], Value::Null);
    let id = media["id"].as_str().unwrap().to_owned();
    let done = wait_processed(&stack, &token, &id).await;
    assert!(done["url"].as_str().is_some(), "{done}");

    // A video, with the service restarted right after it was accepted.
    let media = json_status(
        upload(&stack, "/api/v2/media", &token, CLIP, "clip.mov", &[]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let id = media["id"].as_str().unwrap().to_owned();
    assert_eq!(media["type"], "video");
    stack.stop_media().await;
    let res = stack
        .get(&format!("/api/v1/media/{id}"), Some(&token))
        .await;
    json_error(res, 503).await;
    stack.restart_media().await;
    let video = wait_processed(&stack, &token, &id).await;
    assert_eq!(video["type"], "video");
    let meta = &video["meta"];
    assert_eq!(meta["original"]["width"], 160, "{video}");
    assert_eq!(meta["original"]["height"], 120, "{video}");
    let duration = meta["original"]["duration"].as_f64().unwrap();
    assert!((1.5..2.5).contains(&duration), "{video}");
    assert_eq!(meta["fps"], 25, "{video}");
    assert_eq!(meta["length"].as_str().unwrap().len(), "0:00:02.00".len());
    let res = fetch(&stack, &local(&video["url"]), &[("range", "bytes=0-1023")]).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&res, "content-type"), "video/mp4");
    assert!(
        header(&res, "content-encoding").is_empty(),
        "video compressed"
    );
    let head = res.bytes().await.unwrap();
    assert_eq!(head.len(), 1024);
    assert_eq!(&head[4..8], b"ftyp");
    let whole = fetch(&stack, &local(&video["url"]), &[]).await;
    let mp4 = whole.bytes().await.unwrap();
    assert!(!contains(&mp4, b"+48.8566"), "the GPS location survived");
    let poster = fetch(&stack, &local(&video["preview_url"]), &[]).await;
    assert_eq!(header(&poster, "content-type"), "image/jpeg");
    // Each job ran to the end once: the table holds two ready rows, nothing pending.
    let pool = sqlx::PgPool::connect(&stack.media_db.admin_url)
        .await
        .unwrap();
    let states: Vec<(String, i32)> =
        sqlx::query_as("SELECT state, attempts FROM media.attachments ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|(s, _)| s == "ready"), "{states:?}");
}

/// Calls the media service served for `method`, from the shared metrics registry.
async fn media_calls(stack: &Stack, method: &str) -> f64 {
    let text = stack.get("/metrics", None).await.text().await.unwrap();
    let label = format!("method=\"rookery.media.v1.Media/{method}\"");
    text.lines()
        .filter(|l| l.starts_with("grpc_server_duration_seconds_count{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_page_of_statuses_with_media_costs_one_media_call() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (token, _) = stack.account(&app, "gallery").await;
    let mut expected = Vec::new();
    for i in 0..6 {
        let mut ids = Vec::new();
        for _ in 0..(i % 3 + 1) {
            let m = json_status(
                upload(&stack, "/api/v2/media", &token, JPEG, "a.jpg", &[]).await,
                StatusCode::OK,
            )
            .await;
            ids.push(m["id"].as_str().unwrap().to_owned());
        }
        let mut form = vec![("status", format!("album {i}"))];
        form.extend(ids.iter().map(|id| ("media_ids[]", id.clone())));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        json_ok(
            stack
                .post_form("/api/v1/statuses", Some(&token), &form)
                .await,
        )
        .await;
        expected.push(ids);
    }
    expected.reverse();
    // A fresh replica: nothing of it cached, so the page must be fetched, in one call.
    let fresh = stack.second_gateway().await;
    let home = eventually(Duration::from_secs(10), || async {
        let home = json_ok(
            stack
                .get_at(&stack.base, "/api/v1/timelines/home", Some(&token))
                .await,
        )
        .await;
        (home.as_array().unwrap().len() == 6).then_some(())
    })
    .await;
    assert!(home.is_some());
    let before = media_calls(&stack, "GetMany").await;
    let page = json_ok(
        stack
            .get_at(&fresh, "/api/v1/timelines/home?limit=40", Some(&token))
            .await,
    )
    .await;
    assert_eq!(media_calls(&stack, "GetMany").await - before, 1.0);
    let got: Vec<Vec<String>> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["media_attachments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(got, expected);
    // Warm: no call at all.
    let before = media_calls(&stack, "GetMany").await;
    json_ok(
        stack
            .get_at(&fresh, "/api/v1/timelines/home?limit=40", Some(&token))
            .await,
    )
    .await;
    assert_eq!(media_calls(&stack, "GetMany").await - before, 0.0);
}

/// A local S3-compatible server (moto) on a free port, stopped when dropped.
struct S3Server {
    child: tokio::process::Child,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// `moto_server`: `MOTO_SERVER`, else the project's `.venv` (made by `make test`), else
/// `PATH`.
fn moto_server() -> String {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return path;
    }
    let root = std::env::var("ROOT").unwrap_or_else(|_| "..".to_owned());
    let venv = format!("{root}/.venv/bin/moto_server");
    if std::path::Path::new(&venv).exists() {
        return venv;
    }
    "moto_server".to_owned()
}

async fn s3_server(bucket: &str) -> S3Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moto_server (pip install 'moto[server]'; make test installs it in .venv)");
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let created = eventually(Duration::from_secs(30), || async {
        let res = http.put(format!("{endpoint}/{bucket}")).send().await.ok()?;
        res.status().is_success().then_some(())
    })
    .await;
    assert!(
        created.is_some(),
        "moto_server did not come up at {endpoint}"
    );
    S3Server { child, endpoint }
}

#[tokio::test]
async fn the_s3_store_serves_like_the_local_one() {
    let s3 = s3_server("rookery-media").await;
    let endpoint = s3.endpoint.clone();
    let stack = spawn_with_media(move |c| {
        c.store = rookery_media::config::StoreConfig::S3 {
            bucket: "rookery-media".into(),
            endpoint: Some(endpoint),
            region: "us-east-1".into(),
            credentials: Some(("test".into(), "test".into())),
        };
    })
    .await;
    let app = stack.create_app().await;
    let (token, _) = stack.account(&app, "cloud").await;
    let media = json_status(
        upload(&stack, "/api/v2/media", &token, JPEG, "a.jpg", &[]).await,
        StatusCode::OK,
    )
    .await;
    let url = local(&media["url"]);
    let res = fetch(&stack, &url, &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let original = res.bytes().await.unwrap();
    assert!(!contains(&original, b"Exif"));
    let res = fetch(&stack, &url, &[("range", "bytes=2-5")]).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap(), original.slice(2..6));
    // The files are in the bucket (and the upload as received is not left there).
    let listing = reqwest::get(format!("{}/rookery-media", s3.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = url.trim_start_matches("/system/media/");
    assert!(listing.contains(key), "{listing}");
    assert!(!listing.contains("incoming/"), "{listing}");
    let id = media["id"].as_str().unwrap();
    assert_eq!(delete_media(&stack, &token, id).await, StatusCode::OK);
    let res = fetch(&stack, &url, &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// Found by the load harness: every file served used to end with the gateway dropping the
/// media service's stream before its trailers, which resets it; h2 fails a connection
/// after 1024 such resets, and later reads on it answered 429 or were cut off.
#[tokio::test]
async fn thousands_of_file_reads_on_one_connection_all_succeed() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (token, _) = stack.account(&app, "reader").await;
    let media = json_status(
        upload(&stack, "/api/v2/media", &token, JPEG, "a.jpg", &[]).await,
        StatusCode::OK,
    )
    .await;
    let path = local(&media["preview_url"]);
    let expected = fetch(&stack, &path, &[]).await.bytes().await.unwrap();
    assert!(!expected.is_empty());
    let reads = 1_500;
    let failures: Vec<String> = futures::stream::iter(0..reads)
        .map(|_| {
            let (stack, path, expected) = (&stack, &path, &expected);
            async move {
                let res = fetch(stack, path, &[]).await;
                let status = res.status();
                match res.bytes().await {
                    Ok(body) if status == StatusCode::OK && body == *expected => None,
                    Ok(body) => Some(format!("{status}, {} bytes", body.len())),
                    Err(e) => Some(format!("{status}, body cut: {e}")),
                }
            }
        })
        .buffer_unordered(8)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {reads} reads failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
}

// ------------------------------------------------------------------- hostile files

/// A field of the process's `/proc/self/status` (`VmHWM`: peak resident set; `VmRSS`:
/// now), in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Bits written least significant first, as deflate packs them.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    used: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        for i in 0..count {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = u8::from(value >> i & 1 == 1);
            *self.bytes.last_mut().unwrap() |= bit << (self.used % 8);
            self.used += 1;
        }
    }

    /// A Huffman code: most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        let reversed = (0..len).fold(0, |r, i| r | ((code >> i & 1) << (len - 1 - i)));
        self.put(reversed, len);
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A real, valid PNG of `width`×`height` black RGB pixels, compressed as far as deflate
/// goes (one literal, then 258-byte copies at distance 1, fixed Huffman codes: 13 bits
/// per 258 bytes): 8000×8000 pixels (192 MB decoded) fit in 1.2 MB.
fn black_png(width: u32, height: u32) -> Vec<u8> {
    let raw = u64::from(height) * (1 + 3 * u64::from(width));
    let mut bits = Bits::default();
    bits.put(1, 1); // the final block
    bits.put(1, 2); // fixed Huffman codes
    bits.code(0b0011_0000, 8); // literal 0
    let mut left = raw - 1;
    while left >= 258 {
        bits.code(0b1100_0101, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0b0011_0000, 8);
    }
    bits.code(0, 7); // end of block (symbol 256)
    let mut zlib = vec![0x78, 0x01];
    zlib.extend_from_slice(&bits.bytes);
    // Adler-32 of zeros: a = 1, b = the length.
    let adler = u32::try_from((raw % 65_521) << 16 | 1).unwrap();
    zlib.extend_from_slice(&adler.to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &zlib);
    png_chunk(&mut png, b"IEND", &[]);
    png
}

/// A PNG header claiming `width`×`height` over an empty image stream.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

/// The smallest GIF: 1×1, one transparent pixel.
const GIF_1X1: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00\
    !\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// A JPEG whose frame header says 65500×65500: SOI, SOF0, SOS, EOI.
fn jpeg_header_only() -> Vec<u8> {
    let mut jpeg = vec![
        0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFF, 0xDC, 0xFF, 0xDC,
    ];
    jpeg.extend_from_slice(&[0x03, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C, 0x03, 1, 0, 2, 0x11, 3, 0x11]);
    jpeg.extend_from_slice(&[0x00, 0x3F, 0x00, 0xFF, 0xD9]);
    jpeg
}

/// `POST {path}` of `file` named `name`, declared as `mime`.
async fn upload_as(
    stack: &Stack,
    path: &str,
    token: &str,
    file: Vec<u8>,
    name: &str,
    mime: &str,
) -> reqwest::Response {
    let part = Part::bytes(file)
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap();
    stack
        .http
        .post(format!("{}{path}", stack.base))
        .bearer_auth(token)
        .multipart(Form::new().part("file", part))
        .send()
        .await
        .unwrap()
}

/// Hostile files through the whole stack: truncated images of every format, decompression
/// bombs (a lying header, and a real 8000×8000 image compressed to 1.2 MB), polyglots, an
/// HTML page declared as a PNG, huge dimensions, an empty file, broken videos. Each is
/// refused with 422 in Mastodon's error format, quickly, and without the process's peak
/// memory growing: the limits refuse from the header, before any pixel is decoded.
#[tokio::test]
async fn hostile_files_are_refused_fast_in_bounded_memory() {
    let stack = spawn().await;
    let app = stack.create_app().await;
    let (token, _) = stack.account(&app, "mallory").await;

    // Warm-up (and the WebP sample): a real upload, its WebP original.
    let media = json_status(
        upload(&stack, "/api/v2/media", &token, JPEG, "a.jpg", &[]).await,
        StatusCode::OK,
    )
    .await;
    let webp = fetch(&stack, &local(&media["url"]), &[("accept", "image/webp")])
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(&webp[8..12], b"WEBP");
    let small_png = black_png(64, 48);
    json_status(
        upload_as(
            &stack,
            "/api/v2/media",
            &token,
            small_png.clone(),
            "b.png",
            "image/png",
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let mut gif_ok = GIF_1X1.to_vec();
    json_status(
        upload_as(
            &stack,
            "/api/v2/media",
            &token,
            gif_ok.clone(),
            "c.gif",
            "image/gif",
        )
        .await,
        StatusCode::OK,
    )
    .await;

    let html = b"<html><body><script>alert(document.cookie)</script></body></html>".to_vec();
    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00payload.jsPK\x05\x06\x00\x00\x00\x00".to_vec();
    let bomb = black_png(8000, 8000);
    assert!(bomb.len() < 2 * 1024 * 1024, "{} bytes", bomb.len());
    let mut huge_gif = GIF_1X1.to_vec();
    huge_gif[6..10].copy_from_slice(&[0xFF; 4]);
    let with = |head: &[u8], tail: &[u8]| [head, tail].concat();
    let mut cases: Vec<(String, Vec<u8>, &str)> = Vec::new();
    for (name, whole) in [
        ("jpeg", JPEG.to_vec()),
        ("png", small_png.clone()),
        ("gif", GIF_1X1.to_vec()),
        ("webp", webp.clone()),
    ] {
        let n = whole.len();
        for cut in [n / 10, n / 2, n - 12] {
            let name = format!("{name} cut at {cut} of {n}");
            cases.push((name, whole[..cut].to_vec(), "image/png"));
        }
    }
    cases.extend([
        (
            "png 100000x100000, lying header".into(),
            png_header_only(100_000, 100_000),
            "image/png",
        ),
        ("png 8000x8000, real, 1.2 MB".into(), bomb, "image/png"),
        ("gif 65535x65535".into(), huge_gif, "image/gif"),
        ("jpeg 65500x65500".into(), jpeg_header_only(), "image/jpeg"),
        (
            "gif header + html".into(),
            with(b"GIF89a", &html),
            "image/gif",
        ),
        (
            "jpeg header + html".into(),
            with(&JPEG[..20], &html),
            "image/jpeg",
        ),
        (
            "gif header + zip".into(),
            with(b"GIF89a", &zip),
            "image/gif",
        ),
        (
            "png header + zip".into(),
            with(&small_png[..33], &zip),
            "image/png",
        ),
        ("html as image/png".into(), html.clone(), "image/png"),
        (
            "svg as image/png".into(),
            b"<svg onload=\"alert(1)\"/>".to_vec(),
            "image/png",
        ),
        ("zip as image/png".into(), zip.clone(), "image/png"),
        ("empty file".into(), Vec::new(), "image/png"),
        (
            "mp4: ftyp + garbage".into(),
            {
                let mut v = b"\0\0\0\x18ftypisom\0\0\x02\0isommp42".to_vec();
                v.extend((0..65_536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
                v
            },
            "video/mp4",
        ),
        (
            "mov cut in half".into(),
            CLIP[..CLIP.len() / 2].to_vec(),
            "video/quicktime",
        ),
        (
            "webm: ebml + garbage".into(),
            {
                let mut v = vec![0x1A, 0x45, 0xDF, 0xA3, 0x88, 0x42, 0x82, 0x84];
                v.extend_from_slice(b"webm");
                v.extend((0..65_536u32).map(|i| (i.wrapping_mul(40_503) >> 8) as u8));
                v
            },
            "video/webm",
        ),
    ]);

    let before = proc_status_kib("VmHWM");
    let mut report = Vec::new();
    for (name, bytes, mime) in cases {
        let size = bytes.len();
        let started = Instant::now();
        // `/api/v1/media` processes in the request, videos included.
        let res = upload_as(&stack, "/api/v1/media", &token, bytes, "upload.png", mime).await;
        let status = res.status();
        let body = json_error(res, 422).await;
        let elapsed = started.elapsed();
        report.push(format!(
            "{name} ({size} B): {status} in {elapsed:.0?}: {}",
            body["error"].as_str().unwrap()
        ));
        assert!(elapsed < Duration::from_secs(10), "{name}: {elapsed:?}");
    }
    let after = proc_status_kib("VmHWM");
    // Peak memory says nothing while other tests share the process (cargo test runs them
    // as threads); nextest gives each test its own. (With the pixel limit lifted, the
    // 8000×8000 PNG alone takes the peak from ~70 to ~350 MiB.)
    let alone = std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test");
    eprintln!("{}", report.join("\n"));
    eprintln!(
        "peak RSS: {} MiB before, {} MiB after (now {} MiB){}",
        before / 1024,
        after / 1024,
        proc_status_kib("VmRSS") / 1024,
        if alone {
            ""
        } else {
            "; not checked: the process is shared"
        }
    );
    if alone {
        assert!(
            after - before < 48 * 1024,
            "peak RSS grew by {} MiB",
            (after - before) / 1024
        );
    }

    // A whole image carrying a passenger (HTML and a ZIP after its end) is an image, as in
    // Mastodon (phones append videos to JPEGs), and it is stored re-encoded: no file
    // served carries the passenger.
    gif_ok.extend_from_slice(&html);
    gif_ok.extend_from_slice(&zip);
    let mut jpeg_ok = JPEG.to_vec();
    jpeg_ok.extend_from_slice(&html);
    jpeg_ok.extend_from_slice(&zip);
    for (name, file) in [("a.gif", gif_ok), ("a.jpg", jpeg_ok)] {
        let media = json_status(
            upload_as(&stack, "/api/v2/media", &token, file, name, "image/png").await,
            StatusCode::OK,
        )
        .await;
        for url in [&media["url"], &media["preview_url"]] {
            for accept in ["*/*", "image/webp"] {
                let served = fetch(&stack, &local(url), &[("accept", accept)]).await;
                let served = served.bytes().await.unwrap();
                assert!(!contains(&served, b"<script"), "{name}: the HTML is served");
                assert!(
                    !contains(&served, b"PK\x03\x04"),
                    "{name}: the ZIP is served"
                );
            }
        }
    }

    // A broken video through `/api/v2/media` is accepted for processing (202, as
    // Mastodon), then fails: its state answers 422.
    let res = upload_as(
        &stack,
        "/api/v2/media",
        &token,
        CLIP[..CLIP.len() / 2].to_vec(),
        "clip.mov",
        "video/quicktime",
    )
    .await;
    let id = json_status(res, StatusCode::ACCEPTED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = eventually(Duration::from_secs(30), || async {
        let res = stack
            .get(&format!("/api/v1/media/{id}"), Some(&token))
            .await;
        (res.status() != StatusCode::PARTIAL_CONTENT).then_some(res)
    })
    .await
    .expect("the broken video is still processing");
    json_error(failed, 422).await;
}
