//! MQTT over WebSocket mounted in an axum router next to ordinary HTTP routes, with the same broker also
//! listening for MQTT over TCP.
//!
//! ```sh
//! cargo run -p corvid --features axum --example axum_websocket -- [HTTP_ADDR] [MQTT_TCP_ADDR]
//! # defaults: 127.0.0.1:8080 and 127.0.0.1:1883; open http://127.0.0.1:8080/ and then:
//! mosquitto_pub -p 1883 -t demo/hello -m 'hello from TCP'
//! ```
//! The page at `/` loads MQTT.js (bundled, served at `/mqtt.min.js`), connects to `ws://HOST/mqtt`, subscribes to
//! `demo/#` (or `?topic=...`) and lists the messages it receives.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use corvid::{Endpoint, Server, ServerOptions};
use std::net::SocketAddr;

const PAGE: &str = include_str!("axum_websocket.html");
/// MQTT.js 5.16.0, MIT license (see assets/MQTT.js-LICENSE.md).
const MQTT_JS: &str = include_str!("assets/mqtt.min.js");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let http_addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:8080").parse()?;
    let tcp_addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:1883").parse()?;

    let options = ServerOptions::builder().without_default_endpoint().with_endpoint(Endpoint::Tcp(tcp_addr)).build();
    let server = Server::start(options).await?;

    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/mqtt.min.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], MQTT_JS).into_response() }),
        )
        .route("/mqtt", corvid::transport::axum::mqtt_websocket(server.handle()));
    let listener = tokio::net::TcpListener::bind(http_addr).await?;
    println!("HTTP and MQTT over WebSocket on http://{}/ (WebSocket at /mqtt)", listener.local_addr()?);
    println!("MQTT over TCP on {}", server.local_addrs()[0]);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    server.stop().await;
    Ok(())
}
