"""Speech-to-text provider nodes."""
