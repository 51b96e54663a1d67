"""Text-to-speech provider nodes."""
