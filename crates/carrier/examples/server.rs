//! A minimal Carrier server: accepts connections on UDP port 4000 and echoes every message
//! back on the channel, with the reliability and priority, it came with.
//!
//! Run it with `cargo run -p carrier --example server`, then, in another terminal,
//! `cargo run -p carrier --example client`. Stop it with Ctrl-C.

use std::time::Duration;

use carrier::{Carrier, CarrierDesc, CarrierEvent};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Any IPv4 address, port 4000; every other setting keeps its default.
    let carrier = Carrier::new(CarrierDesc {
        port: 4000,
        ..CarrierDesc::default()
    })?;
    println!("echo server listening on {}", carrier.local_addr());
    loop {
        // Once per frame: tells the carrier thread the game is alive.
        carrier.update();
        while let Some(event) = carrier.poll_event() {
            match event {
                CarrierEvent::ConnectionEstablished { id } => println!("{id} connected"),
                CarrierEvent::Disconnect { id, reason } => println!("{id} left: {reason}"),
                _ => {}
            }
        }
        // Every message from any connection and channel, in delivery order.
        while let Some((id, m)) = carrier.poll_message() {
            println!("{id}: {}", String::from_utf8_lossy(&m.payload));
            if let Err(e) = carrier.send(id, &m.payload, m.reliability, m.priority, m.channel) {
                eprintln!("{id}: echo not sent: {e}");
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
