//! A minimal Carrier client: connects to the example server (or the address given as the first
//! argument), sends a few reliable messages, prints the echoes, then disconnects.
//!
//! Run `cargo run -p carrier --example server` first, then `cargo run -p carrier --example client`.

use std::time::Duration;

use carrier::{Carrier, CarrierDesc, CarrierEvent, Priority, Reliability};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::args().nth(1).unwrap_or("127.0.0.1:4000".into());
    let carrier = Carrier::new(CarrierDesc::default())?;
    let id = carrier.connect(&server)?;
    // Connecting is asynchronous: wait for the outcome (the handshake times out after 5 s).
    loop {
        match carrier.wait_event(Duration::from_secs(10)) {
            Some(CarrierEvent::ConnectionEstablished { .. }) => break,
            Some(CarrierEvent::FailedToConnect { reason, .. }) => Err(reason.to_string())?,
            Some(_) => continue,
            None => Err("no answer")?,
        }
    }
    println!("connected to {server}");
    for i in 1..=5 {
        let text = format!("hello #{i}");
        // Reliable: delivered exactly once, in order, on channel 0.
        carrier.send(
            id,
            text.as_bytes(),
            Reliability::Reliable,
            Priority::Normal,
            0,
        )?;
    }
    let mut echoes = 0;
    for _ in 0..1_000 {
        carrier.update(); // once per frame
        while let Some(echo) = carrier.receive(id, 0) {
            println!("echo: {}", String::from_utf8_lossy(&echo));
            echoes += 1;
        }
        if echoes == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(stats) = carrier.statistics(id) {
        println!("{echoes} echoes, rtt {:?}", stats.rtt.smoothed);
    }
    carrier.disconnect(id); // dropping the carrier would disconnect too
    Ok(())
}
