"""Pure logic shared by server and client: crypto, chunking, the wire format. No I/O."""
