"""The metrics watcher judges kvmsched's endpoint only while kvmsched runs."""
import socket
import tempfile
import unittest

from kvmlab.watcher import Watcher


def closed_port():
    """A loopback port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class WatcherTest(unittest.TestCase):
    def watcher(self):
        out = tempfile.mkdtemp()
        return Watcher(lambda: 1.0, out, kvmsched_pid=0, metrics_addr=f"127.0.0.1:{closed_port()}")

    def test_a_failed_scrape_while_running_counts(self):
        w = self.watcher()
        w.scrape()
        self.assertEqual(len(w.scrapes), 1)
        self.assertFalse(w.scrapes[0].ok)

    def test_a_scrape_racing_the_stop_is_not_counted(self):
        w = self.watcher()
        w.stop_event.set()
        w.scrape()
        self.assertEqual(w.scrapes, [])


if __name__ == "__main__":
    unittest.main()
