//! Validating clients: the connection validator sees every CONNECT and refuses it by setting a return code.
//!
//! Client identifiers shorter than 10 characters are refused with "identifier rejected"; every client must log in
//! as `mySecretUser` / `mySecretPassword`, or is refused with "bad user name or password". The validator speaks
//! MQTT 3.1.1's vocabulary ([`ConnectReturnCode`]); MQTT 5 clients receive the matching reason code (0x85, 0x86).
//!
//! ```text
//! cargo run -p corvid --example connection_validator
//! mosquitto_pub -p 1883 -i my-long-client-id -u mySecretUser -P mySecretPassword -t t -m hello
//! ```

mod support;

use corvid::{ConnectReturnCode, Server, ServerOptions};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = ServerOptions::builder()
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1883))
        .with_connection_validator(|c| {
            if c.client_id.len() < 10 {
                c.refuse(ConnectReturnCode::IdentifierRejected);
                return;
            }
            if c.username.as_deref() != Some("mySecretUser") {
                c.refuse(ConnectReturnCode::BadUserNameOrPassword);
                return;
            }
            if c.password.as_deref() != Some(b"mySecretPassword".as_slice()) {
                c.refuse(ConnectReturnCode::BadUserNameOrPassword);
            }
            // Leaving `reason_code` at its default (success) accepts the connection.
        })
        .build();
    let server = Server::start(options).await?;
    support::announce(&server);

    support::shutdown_signal().await;
    server.stop().await;
    Ok(())
}
