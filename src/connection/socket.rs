//! What a connection runs on: a plain TCP socket (split into owned halves, no lock between
//! reader and writer) or a TLS stream (split with tokio's shared split).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    fn into_halves(self) -> (Self::Read, Self::Write);
}

impl Socket for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

impl Socket for TlsStream {
    type Read = tokio::io::ReadHalf<TlsStream>;
    type Write = tokio::io::WriteHalf<TlsStream>;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}
