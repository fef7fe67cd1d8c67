"""Raw files into the `images` table: decode and hash each photo, sync, thumbnails."""
