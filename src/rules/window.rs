//! Time windows: `{ days = "mon-fri", hours = "09:00-18:00", tz = "Europe/Berlin" }`.
//!
//! A window opens on each listed day at the start hour, local time in its zone, and closes at the end hour,
//! which may be on the next day (`"22:00-06:00"`). Local times are turned into instants with jiff, so
//! daylight-saving changes move the instant, not the wall-clock hour; a start (or an end) that falls in a
//! skipped hour is the first moment after the gap (02:30 on the day Berlin skips 02:00-03:00 is 03:00 CEST).
//! In a repeated hour the earlier of the two instants counts.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A weekly opening, compiled.
#[derive(Debug, Clone)]
pub struct Window {
    /// Indexed Monday = 0.
    days: [bool; 7],
    start_min: u16,
    /// Minutes after the start day's midnight; may exceed 1440 for spans over midnight.
    end_min: u16,
    tz: TimeZone,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    /// Parses the three parts of a window; errors say which part is wrong and how to write it.
    pub fn parse(days: &str, hours: &str, tz: Option<&str>) -> Result<Self, String> {
        let days = parse_days(days)?;
        let (start_min, mut end_min) = parse_hours(hours)?;
        if end_min <= start_min {
            end_min += 24 * 60;
        }
        let tz_name = tz.unwrap_or("UTC");
        let tz = TimeZone::get(tz_name).map_err(|_| {
            format!("`{tz_name}` is not a known time zone; use an IANA name like \"Europe/Berlin\" or \"UTC\"")
        })?;
        Ok(Self {
            days,
            start_min,
            end_min,
            tz,
        })
    }

    /// The openings of this window that start on `date` (local), as instants.
    fn opening_on(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days[weekday_index(date.weekday())] {
            return None;
        }
        let at = |minutes: u16| -> Option<Timestamp> {
            let day = date
                .checked_add((minutes / (24 * 60)) as i64 * 1.day())
                .ok()?;
            let m = minutes % (24 * 60);
            let dt = day.at((m / 60) as i8, (m % 60) as i8, 0, 0);
            let zoned = dt.to_zoned_datetime(self.tz.clone()).ok()?;
            if zoned.datetime() == dt {
                return Some(zoned.timestamp());
            }
            // `dt` fell in a gap (clocks went forward), and jiff moved it later by the gap's length: the
            // moment after the gap is the transition just before that.
            let after_gap = self.tz.preceding(zoned.timestamp()).next();
            Some(after_gap.map_or(zoned.timestamp(), |t| t.timestamp()))
        };
        Some((at(self.start_min)?, at(self.end_min)?))
    }
}

fn weekday_index(w: Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

fn parse_days(raw: &str) -> Result<[bool; 7], String> {
    let hint = "write days like \"mon-fri\", \"sat,sun\" or \"daily\"";
    let day = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        DAY_NAMES
            .iter()
            .position(|d| s == *d)
            .or_else(|| FULL_DAY_NAMES.iter().position(|d| s == *d))
            .ok_or_else(|| format!("`{s}` is not a day; {hint}"))
    };
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("daily") {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for part in raw.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

const FULL_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn parse_hours(raw: &str) -> Result<(u16, u16), String> {
    let hint = || {
        format!(
            "`{raw}` is not an hour range; write it like \"09:00-18:00\" (or \"22:00-06:00\" over midnight)"
        )
    };
    let (a, b) = raw.split_once('-').ok_or_else(hint)?;
    let hm = |s: &str| -> Result<u16, String> {
        let (h, m) = s.trim().split_once(':').ok_or_else(hint)?;
        let (h, m): (u16, u16) = (
            h.parse().map_err(|_| hint())?,
            m.parse().map_err(|_| hint())?,
        );
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(hint());
        }
        Ok(h * 60 + m)
    };
    let (start, end) = (hm(a)?, hm(b)?);
    if start == end || start == 24 * 60 {
        return Err(format!("`{raw}` is empty or starts at 24:00; {}", hint()));
    }
    Ok((start, end))
}

/// The first instant at or after `now` inside any of `windows`: `now` itself when one is open. `None` only for
/// an empty list.
pub fn next_open(windows: &[Window], now: Timestamp) -> Option<Timestamp> {
    let mut best: Option<Timestamp> = None;
    for w in windows {
        let today = now.to_zoned_datetime(w.tz.clone()).date();
        // Yesterday's opening may still be going on past midnight; a week ahead always finds a listed day.
        for offset in -1i64..=7 {
            let Ok(date) = today.checked_add(offset.days()) else {
                continue;
            };
            let Some((start, end)) = w.opening_on(date) else {
                continue;
            };
            if start <= now && now < end {
                return Some(now);
            }
            if start > now && best.is_none_or(|b| start < b) {
                best = Some(start);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn inside_a_window_is_now() {
        let w = [Window::parse("mon-fri", "09:00-18:00", Some("Europe/Berlin")).unwrap()];
        // Wednesday 2026-11-25 10:00 in Berlin (UTC+1).
        let now = ts("2026-11-25T09:00:00Z");
        assert_eq!(next_open(&w, now), Some(now));
    }

    #[test]
    fn after_friday_closing_the_next_opening_is_monday_morning() {
        let w = [Window::parse("mon-fri", "09:00-18:00", Some("Europe/Berlin")).unwrap()];
        let friday_evening = ts("2026-11-27T19:00:00Z");
        assert_eq!(
            next_open(&w, friday_evening),
            Some(ts("2026-11-30T08:00:00Z"))
        );
    }

    #[test]
    fn a_span_over_midnight_is_open_after_midnight() {
        let w = [Window::parse("fri", "22:00-06:00", None).unwrap()];
        // Saturday 03:00 UTC belongs to Friday's night window.
        let now = ts("2026-11-28T03:00:00Z");
        assert_eq!(next_open(&w, now), Some(now));
        // Saturday 07:00 is after it: the next one opens Friday 22:00.
        assert_eq!(
            next_open(&w, ts("2026-11-28T07:00:00Z")),
            Some(ts("2026-12-04T22:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_moves_the_instant_not_the_local_hour() {
        let w = [Window::parse("daily", "09:00-10:00", Some("Europe/Berlin")).unwrap()];
        // Clocks go forward on Sunday 2026-03-29: 09:00 is 08:00Z before and 07:00Z after.
        assert_eq!(
            next_open(&w, ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-29T07:00:00Z"))
        );
        assert_eq!(
            next_open(&w, ts("2026-03-27T12:00:00Z")),
            Some(ts("2026-03-28T08:00:00Z"))
        );
    }

    #[test]
    fn a_start_inside_the_skipped_hour_opens_after_the_gap() {
        let w = [Window::parse("sun", "02:30-04:00", Some("Europe/Berlin")).unwrap()];
        // 02:30 does not exist on 2026-03-29 (02:00 CET is 03:00 CEST); 03:00 CEST (01:00Z) is the first moment
        // after the gap. jiff's own choice, 03:30, would open the window half an hour late.
        assert_eq!(
            next_open(&w, ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        let closing_in_the_gap =
            [Window::parse("sun", "01:00-02:30", Some("Europe/Berlin")).unwrap()];
        assert_eq!(
            next_open(&closing_in_the_gap, ts("2026-03-29T00:59:00Z")),
            Some(ts("2026-03-29T00:59:00Z")),
            "open until the gap ends"
        );
        assert_eq!(
            next_open(&closing_in_the_gap, ts("2026-03-29T01:00:00Z")),
            Some(ts("2026-04-04T23:00:00Z")),
            "closed from the gap's end, 01:00Z"
        );
    }

    #[test]
    fn days_parse_in_every_form() {
        assert_eq!(parse_days("daily").unwrap(), [true; 7]);
        assert_eq!(
            parse_days("sat,sun").unwrap(),
            [false, false, false, false, false, true, true]
        );
        assert_eq!(
            parse_days("fri-mon").unwrap(),
            [true, false, false, false, true, true, true]
        );
        assert_eq!(
            parse_days("Monday").unwrap(),
            [true, false, false, false, false, false, false]
        );
        assert!(parse_days("mon-funday").unwrap_err().contains("not a day"));
    }

    #[test]
    fn malformed_hours_and_zones_are_refused() {
        for bad in [
            "9-18",
            "09:00",
            "25:00-26:00",
            "09:60-10:00",
            "10:00-10:00",
            "24:00-01:00",
        ] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_hours("22:00-24:00").unwrap(), (1320, 1440));
        assert!(
            Window::parse("daily", "09:00-10:00", Some("Mars/Olympus"))
                .unwrap_err()
                .contains("time zone")
        );
    }
}
