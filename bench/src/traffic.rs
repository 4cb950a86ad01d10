//! Webhook traffic that looks like real traffic, from a fixed seed so every run posts the same bodies: four
//! sessions; chat numbers drawn from a large population of phone numbers of several countries, a few chats
//! busy and most quiet; one message in ten in a group, its sender one of 5,000 participants; some chats and
//! participants known only by a LID (`…@lid`); message ids random in the forms each sender makes (WhatsApp
//! Web's `3EB0…`, phones' 32 hex digits, Baileys' `BAE5…`), in the shapes of WAHA's three engines.

/// The sessions the traffic spreads over.
const SESSIONS: [&str; 4] = ["default", "sales", "support", "shop"];
/// Direct chats: a few busy ones take a fifth of the messages, the rest spread over this many.
const QUIET_CHATS: u64 = 2_000_000;
const BUSY_CHATS: u64 = 50;
/// Groups, and the people who write in them.
const GROUPS: u64 = 2_000;
const PARTICIPANTS: u64 = 5_000;

/// splitmix64: a fixed-seed generator whose outputs have no order.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A person: a phone number in one of several countries' forms, or for one in seven a LID.
fn person(n: u64) -> String {
    let r = mix(n ^ 0x5EED_0001);
    match r % 7 {
        0 => format!("{}@lid", 100_000_000_000_000 + r / 7 % 900_000_000_000_000),
        1 | 2 => format!("49{}@c.us", 1_500_000_000 + r / 7 % 300_000_000),
        3 | 4 => format!("55{}@c.us", 11_900_000_000 + r / 7 % 100_000_000),
        5 => format!("91{}@c.us", 7_000_000_000 + r / 7 % 3_000_000_000),
        _ => format!("1{}@c.us", 2_000_000_000 + r / 7 % 8_000_000_000),
    }
}

fn group(n: u64) -> String {
    format!(
        "120363{:012}@g.us",
        mix(n ^ 0x5EED_0002) % 1_000_000_000_000
    )
}

/// A message id as its sender's client makes it: WhatsApp Web, a phone, or Baileys.
fn message_id(r: u64) -> String {
    let (a, b) = (mix(r), mix(r ^ 0xA5A5));
    match r % 3 {
        0 => format!("3EB0{:016X}{:04X}", a, b >> 48),
        1 => format!("{a:016X}{b:016X}"),
        _ => format!("BAE5{:012X}", a >> 16),
    }
}

/// One drawn message: where it was written, by whom, and its ids.
pub struct Message {
    pub session: &'static str,
    pub chat: String,
    /// The group member who wrote it, in a group.
    pub participant: Option<String>,
    /// The id as the sender's client made it.
    pub id: String,
    /// WAHA's serialized id: `false_<chat>_<id>`, plus `_<participant>` in a group.
    pub serialized: String,
    /// What else the draw decides (the engine's shape).
    pub r: u64,
}

/// Message `seq` of stream `stream` (streams keep two files' ids apart).
pub fn message(stream: usize, seq: usize) -> Message {
    let r = mix(((stream as u64) << 40) ^ seq as u64);
    let (chat, participant) = if r.is_multiple_of(10) {
        let sender = person(mix(r ^ 1) % PARTICIPANTS);
        (group(mix(r ^ 2) % GROUPS), Some(sender))
    } else if r % 5 == 1 {
        (person(mix(r ^ 3) % BUSY_CHATS), None)
    } else {
        (person(BUSY_CHATS + mix(r ^ 3) % QUIET_CHATS), None)
    };
    let id = message_id(mix(r ^ 4));
    let serialized = match &participant {
        Some(p) => format!("false_{chat}_{id}_{p}"),
        None => format!("false_{chat}_{id}"),
    };
    Message {
        session: SESSIONS[(r % 4) as usize],
        chat,
        participant,
        id,
        serialized,
        r,
    }
}

/// Webhook `seq` of stream `stream`: a WAHA `message` event of the engine and chat that the draw gives.
pub fn body(stream: usize, seq: usize) -> String {
    let Message {
        session,
        chat,
        participant,
        id,
        serialized,
        r,
    } = message(stream, seq);
    let participant_field = participant
        .as_ref()
        .map(|p| format!(r#","participant":"{p}""#))
        .unwrap_or_default();
    let text = "Hello, is this still available?";
    match r / 10 % 3 {
        // WEBJS: the whole message under `_data`, about 1.1 KB.
        0 => format!(
            r#"{{"id":"evt_{stream}_{seq}","timestamp":1764147600000,"event":"message","session":"{session}","me":{{"id":"4900000000@c.us","pushName":"bot"}},"payload":{{"id":"{serialized}","timestamp":1764147600,"from":"{chat}","fromMe":false{participant_field},"to":"4900000000@c.us","body":"{text}","hasMedia":false,"ack":1,"vCards":[],"_data":{{"id":{{"fromMe":false,"remote":"{chat}","id":"{id}","_serialized":"{serialized}"}},"body":"{text}","type":"chat","t":1764147600,"notifyName":"Customer","from":"{chat}","to":"4900000000@c.us","self":"in","ack":1,"isNewMsg":true,"star":false,"recvFresh":true,"broadcast":false,"mentionedJidList":[],"isForwarded":false,"hasReaction":false,"isEphemeral":false,"links":[]}}}},"engine":"WEBJS","environment":{{"version":"2025.1","engine":"WEBJS","tier":"PLUS"}}}}"#
        ),
        // NOWEB: Baileys' message under `_data`.
        1 => format!(
            r#"{{"id":"evt_{stream}_{seq}","timestamp":1764147600000,"event":"message","session":"{session}","me":{{"id":"4900000000@c.us","pushName":"bot"}},"payload":{{"id":"{serialized}","timestamp":1764147600,"from":"{chat}","fromMe":false{participant_field},"source":"app","body":"{text}","hasMedia":false,"ack":2,"ackName":"DEVICE","_data":{{"key":{{"remoteJid":"{chat}","fromMe":false,"id":"{id}"}},"messageTimestamp":1764147600,"pushName":"Customer","message":{{"conversation":"{text}"}}}}}},"engine":"NOWEB","environment":{{"version":"2025.1","engine":"NOWEB","tier":"PLUS"}}}}"#
        ),
        // GOWS: a lean payload.
        _ => format!(
            r#"{{"id":"evt_{stream}_{seq}","timestamp":1764147600000,"event":"message","session":"{session}","me":{{"id":"4900000000@c.us","pushName":"bot"}},"payload":{{"id":"{serialized}","timestamp":1764147600,"from":"{chat}","fromMe":false{participant_field},"source":"app","body":"{text}","hasMedia":false,"ack":2,"ackName":"DEVICE"}},"engine":"GOWS","environment":{{"version":"2025.1","engine":"GOWS","tier":"PLUS"}}}}"#
        ),
    }
}
