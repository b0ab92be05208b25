//! `brokergate demo`: the gateway on the embedded `config/demo.toml`, a built-in echo v1
//! broker on loopback (the one the demo config points at), a freshly minted short-lived token,
//! and the seed's own curl, ready to paste.

use async_trait::async_trait;
use bytes::BytesMut;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;

use crate::config::{self, Settings};
use crate::server;

const DEMO_TOML: &str = include_str!("../config/demo.toml");
const DEMO_SECRET: &str = "tokensecret";
const TOKEN_LIFETIME_SECONDS: i64 = 3600;

pub fn run() -> Result<(), String> {
    let mut file = config::parse(DEMO_TOML, std::env::vars()).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("brokergate-demo-{}", std::process::id()));
    file.store.sqlite_path = dir.join("demo.sqlite3").display().to_string();
    let settings =
        Settings::from_file(&file, &|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    let broker = settings
        .runtime
        .brokers
        .first()
        .ok_or("the demo config names no broker")?;
    let broker_addr = broker.target.addr.to_string();
    let broker_token = broker.token.expose().to_string();
    let listen = settings.start.listen.to_string();
    let admin = settings.start.admin_listen.to_string();

    let mut server = server::build(settings, &server::RunOptions::default())?;
    let mut echo = Service::new(
        "echo v1 broker".into(),
        EchoBroker {
            token: broker_token,
        }
        .into_app(),
    );
    echo.add_tcp(&broker_addr);
    server.add_service(echo);

    println!(
        "{}",
        instructions(&listen, &admin, &mint_token()?, &file.store.sqlite_path)
    );
    server.run_forever()
}

fn mint_token() -> Result<String, String> {
    let exp = crate::clock::now_unix() + TOKEN_LIFETIME_SECONDS;
    let claims = serde_json::json!({
        "user_id": "uaa-id-207",
        "email": "email-148@somedomain.com",
        "scope": ["cloud_controller.admin"],
        "aud": ["cloud_controller"],
        "exp": exp,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEMO_SECRET.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

fn instructions(listen: &str, admin: &str, token: &str, store: &str) -> String {
    format!(
        r#"brokergate demo: gateway on http://{listen}, echo v1 broker built in, store {store}
Token valid for one hour. Paste this (the documented request); it answers 201 Created:

curl "http://{listen}/v2/service_instances" -d '{{
"space_guid": "f24c6904-30e0-4559-9523-06d2d93f0c9c",
"name": "my-service-instance",
"service_plan_guid": "6df3af55-8f97-4dbe-9d6b-098eb53d8c17"
}}' -X POST \
-H "Authorization: bearer {token}" \
-H "Host: example.org" \
-H "Content-Type: application/x-www-form-urlencoded" \
-H "Cookie: "

A second paste answers 400 (60002, the name is taken). Metrics: http://{admin}/metrics
Access log lines (JSON) follow below. Ctrl-C stops the demo."#
    )
}

/// A minimal v1 gateway in the manner of vcap-services' echo service.
struct EchoBroker {
    token: String,
}

impl EchoBroker {
    fn into_app(self) -> pingora::apps::http_app::HttpServer<EchoBroker> {
        pingora::apps::http_app::HttpServer::new_app(self)
    }
}

fn json_response(status: u16, body: serde_json::Value) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("Content-Length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for EchoBroker {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body = BytesMut::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body.extend_from_slice(&chunk);
        }
        let req = session.req_header();
        let token = req
            .headers
            .get("x-vcap-service-token")
            .map(|v| v.as_bytes());
        if token != Some(self.token.as_bytes()) {
            return json_response(
                401,
                serde_json::json!({"code": 30100, "description": "Not authorized"}),
            );
        }
        let path = req.uri.path();
        match (req.method.as_str(), path) {
            ("POST", "/gateway/v1/configurations") => {
                let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    return json_response(
                        400,
                        serde_json::json!({"code": 30001, "description": "Malformatted request"}),
                    );
                };
                let service_id = uuid::Uuid::new_v4().to_string();
                json_response(
                    200,
                    serde_json::json!({
                        "service_id": service_id,
                        "configuration": {"plan": request["plan"], "version": request["version"]},
                        "credentials": {"host": "127.0.0.1", "port": 5002, "name": service_id},
                    }),
                )
            }
            ("DELETE", p) if p.starts_with("/gateway/v1/configurations/") => {
                json_response(200, serde_json::json!({}))
            }
            _ => json_response(
                404,
                serde_json::json!({"code": 30300, "description": format!("{path} not found")}),
            ),
        }
    }
}
