"""Community: safe public answers, reply bots, incidents (one-to-many replies) and moderation."""
