//! The Corvid MQTT broker library.
