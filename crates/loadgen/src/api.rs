//! A minimal Mastodon API client on one keep-alive connection, for seeding and probes.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::client::{Sender, build_request, connect};

pub struct Api {
    addr: SocketAddr,
    sender: Option<Sender>,
}

/// A request body: content type and bytes.
pub type Body<'a> = Option<(&'a str, Bytes)>;

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    /// Sends one request; returns the status and the JSON body (`Null` when not JSON).
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body<'_>,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, bytes) = self.raw(method, path, token, body).await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    async fn raw(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body<'_>,
    ) -> anyhow::Result<(u16, Bytes)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(connect(self.addr).await?);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        let auth = token
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()?;
        let body = body
            .map(|(content_type, bytes)| {
                Ok::<_, http::Error>((HeaderValue::from_str(content_type)?, bytes))
            })
            .transpose()?;
        let host = HeaderValue::from_str(&self.addr.to_string())?;
        let request = build_request(method, path, host, auth, body)?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// A GET whose body is text (e.g. `/metrics`).
    pub async fn text(&mut self, method: Method, path: &str) -> anyhow::Result<(u16, String)> {
        let (status, bytes) = self.raw(method, path, None, None).await?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// A call that must succeed (2xx); returns the JSON body.
    pub async fn ok(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body<'_>,
    ) -> anyhow::Result<Value> {
        let (status, json) = self.call(method.clone(), path, token, body).await?;
        if !(200..300).contains(&status) {
            bail!("{method} {path} answered {status}: {json}");
        }
        Ok(json)
    }

    /// POSTs a form.
    pub async fn post_form(
        &mut self,
        path: &str,
        token: &str,
        pairs: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.ok(
            Method::POST,
            path,
            Some(token),
            Some(("application/x-www-form-urlencoded", Bytes::from(body))),
        )
        .await
    }
}
