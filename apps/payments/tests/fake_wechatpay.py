"""A local fake of WeChat Pay API v3, for tests: an HTTP server on 127.0.0.1 in
a thread, with a merchant and keys made at start (the merchant's API key pair,
WeChat Pay's "platform" key pair whose public half the shop is given, and the
APIv3 key).

- Every request must carry the merchant's signature (`Authorization:
  WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,signature=…,timestamp=…,
  serial_no=…` over `method\\nurl\\ntimestamp\\nnonce\\nbody\\n`), verified with
  the merchant's public key; a bad one is answered 401 SIGN_ERROR.
- Every answer is signed with the platform private key (`Wechatpay-*` headers),
  as WeChat signs its answers.
- POST /v3/pay/transactions/native | h5: opens a transaction (code_url / h5_url).
- GET /v3/pay/transactions/out-trade-no/{no}?mchid=, /id/{transaction_id}?mchid=.
- POST /v3/pay/transactions/out-trade-no/{no}/close: 204; ORDERPAID / ORDER_NOT_EXIST.
- POST /v3/refund/domestic/refunds: idempotent on out_refund_no; the
  REFUND.SUCCESS notification follows (from a thread) to its notify_url.
- `pay(out_trade_no)`: the buyer pays; the fake POSTs the encrypted, signed
  TRANSACTION.SUCCESS notification to the shop's notify_url.

Signing and encryption are written here again from WeChat's documentation
(not through wechatpayv3), so a mistake shared with the shop cannot pass."""

import base64
import itertools
import json
import secrets
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .fake_server import FakeProviderServer, http_exchange, reply

_numbers = itertools.count(1)
CHINA = ZoneInfo("Asia/Shanghai")


def rsa_key_pair() -> tuple[rsa.RSAPrivateKey, str, str]:
    """(key, private PEM in PKCS#8 as WeChat issues it, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, private_pem, public_pem


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def _now_china() -> str:
    return datetime.now(CHINA).isoformat(timespec="seconds")


@dataclass
class Transaction:
    out_trade_no: str
    trade_type: str  # NATIVE or H5
    total: int
    description: str
    notify_url: str
    time_expire: str
    payer_client_ip: str = ""
    transaction_id: str = ""
    trade_state: str = "NOTPAY"
    success_time: str = ""
    refunds: list = field(default_factory=list)


class FakeWechatPay(FakeProviderServer):
    def __init__(self, *, auto_refund_notify: bool = True):
        super().__init__()
        self.mchid = "1900009191"
        self.appid = "wx" + secrets.token_hex(8)
        self.apiv3_key = secrets.token_hex(16)  # 32 characters
        self.merchant_key, self.merchant_private_pem, self.merchant_public_pem = rsa_key_pair()
        self.merchant_serial = secrets.token_hex(20).upper()
        self.platform_key, _, self.platform_public_pem = rsa_key_pair()
        self.public_key_id = "PUB_KEY_ID_" + secrets.token_hex(12).upper()
        self.transactions: dict[str, Transaction] = {}  # by out_trade_no
        self.refunds: dict[str, dict] = {}  # by out_refund_no
        self.requests: list[tuple[str, str, dict | None]] = []  # verified (method, url, body)
        self.refused: list[tuple[str, str]] = []  # (url, why)
        self.notify_answers: list[tuple[int, str]] = []
        self.auto_refund_notify = auto_refund_notify
        self._lock = threading.Lock()

    def settings(self) -> dict[str, str]:
        """The shop's WECHATPAY_* settings for this fake."""
        return {
            "WECHATPAY_MCHID": self.mchid,
            "WECHATPAY_APPID": self.appid,
            "WECHATPAY_API_V3_KEY": self.apiv3_key,
            "WECHATPAY_PRIVATE_KEY": self.merchant_private_pem,
            "WECHATPAY_CERT_SERIAL": self.merchant_serial,
            "WECHATPAY_PUBLIC_KEY": self.platform_public_pem,
            "WECHATPAY_PUBLIC_KEY_ID": self.public_key_id,
            "WECHATPAY_API_BASE": self.url,
        }

    # --- the buyer's and the tests' side

    def pay(self, out_trade_no: str, *, notify: bool = True) -> tuple[int, str] | None:
        """The buyer pays the transaction; WeChat notifies the shop."""
        with self._lock:
            trade = self.transactions[out_trade_no]
            if trade.trade_state == "NOTPAY":
                trade.trade_state = "SUCCESS"
                trade.transaction_id = f"4200{next(_numbers):08d}{int(time.time()):010d}{secrets.randbelow(10**6):06d}"
                trade.success_time = _now_china()
        return self.notify(trade) if notify else None

    def transaction_resource(self, trade: Transaction) -> dict:
        return {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": trade.out_trade_no,
            "transaction_id": trade.transaction_id,
            "trade_type": trade.trade_type,
            "trade_state": trade.trade_state,
            "trade_state_desc": "支付成功" if trade.trade_state == "SUCCESS" else "未支付",
            "bank_type": "OTHERS",
            "attach": "",
            "success_time": trade.success_time,
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": trade.total, "payer_total": trade.total, "currency": "CNY", "payer_currency": "CNY"},
        }

    def notification(
        self,
        resource: dict,
        *,
        event_type: str = "TRANSACTION.SUCCESS",
        timestamp: int | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
        serial: str | None = None,
        apiv3_key: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a notification: `resource` encrypted with
        the APIv3 key (AEAD_AES_256_GCM), the whole signed by the platform key.
        The keyword arguments forge or age it."""
        original_type = "refund" if event_type.startswith("REFUND.") else "transaction"
        nonce = secrets.token_hex(6)  # 12 characters, as WeChat's
        associated_data = original_type
        ciphertext = AESGCM((apiv3_key or self.apiv3_key).encode()).encrypt(
            nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(), associated_data.encode()
        )
        envelope = {
            "id": str(uuid.uuid4()),
            "create_time": _now_china(),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "支付成功" if original_type == "transaction" else "退款成功",
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ciphertext).decode(),
                "associated_data": associated_data,
                "nonce": nonce,
            },
        }
        body = json.dumps(envelope, ensure_ascii=False).encode()
        return body, self._signed_headers(body, timestamp=timestamp, signing_key=signing_key, serial=serial)

    def notify(self, trade: Transaction, *, resource_changes: dict | None = None, **forgery) -> tuple[int, str]:
        """POST the TRANSACTION.SUCCESS notification of a paid transaction."""
        resource = {**self.transaction_resource(trade), **(resource_changes or {})}
        body, headers = self.notification(resource, **forgery)
        return self.post(trade.notify_url, body, headers)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={**headers, "Content-Type": "application/json"}
        )
        status, answer_body = http_exchange(request, timeout=30)
        answer = (status, answer_body.decode())
        with self._lock:
            self.notify_answers.append(answer)
        return answer

    def refund_notify(self, refund: dict) -> tuple[int, str]:
        trade = self.transactions[refund["out_trade_no"]]
        resource = {
            "mchid": self.mchid,
            "out_trade_no": trade.out_trade_no,
            "transaction_id": trade.transaction_id,
            "out_refund_no": refund["out_refund_no"],
            "refund_id": refund["refund_id"],
            "refund_status": "SUCCESS",
            "success_time": _now_china(),
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": trade.total,
                "refund": refund["amount"]["refund"],
                "payer_total": trade.total,
                "payer_refund": refund["amount"]["refund"],
            },
        }
        body, headers = self.notification(resource, event_type="REFUND.SUCCESS")
        return self.post(refund["notify_url"], body, headers)

    # --- WeChat Pay's side

    def _signed_headers(self, body: bytes, *, timestamp=None, signing_key=None, serial=None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16).upper()
        signature = rsa_sign(signing_key or self.platform_key, f"{ts}\n{nonce}\n{body.decode()}\n")
        return {
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial or self.public_key_id,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
            "Request-ID": str(uuid.uuid4()),
        }

    def _answer(self, handler, status: int, payload: dict | None):
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        headers = self._signed_headers(body)
        if payload is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        reply(handler, status, body, headers)

    def _authorized(self, method: str, url: str, body: str, authorization: str) -> str:
        """Why the merchant's signature is refused, or ""."""
        scheme, _, rest = authorization.partition(" ")
        if scheme != "WECHATPAY2-SHA256-RSA2048":
            return "scheme"
        fields = {}
        for item in rest.split(","):
            name, _, value = item.strip().partition("=")
            fields[name] = value.strip('"')
        if fields.get("mchid") != self.mchid:
            return "mchid"
        if fields.get("serial_no") != self.merchant_serial:
            return "serial_no"
        if not fields.get("timestamp", "").isdigit() or abs(time.time() - int(fields["timestamp"])) > 300:
            return "timestamp"
        message = f"{method}\n{url}\n{fields['timestamp']}\n{fields.get('nonce_str', '')}\n{body}\n"
        try:
            self.merchant_key.public_key().verify(
                base64.b64decode(fields.get("signature", "")), message.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return "signature"
        return ""

    def handle(self, handler):
        method = handler.command
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        url = handler.path
        why = self._authorized(method, url, raw, handler.headers.get("Authorization", ""))
        if why:
            with self._lock:
                self.refused.append((url, why))
            return self._answer(handler, 401, {"code": "SIGN_ERROR", "message": f"签名错误 ({why})"})
        try:
            data = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return self._answer(handler, 400, {"code": "PARAM_ERROR", "message": "body is not JSON"})
        with self._lock:
            self.requests.append((method, url, data))
        path = urlsplit(url).path
        query = dict(parse_qsl(urlsplit(url).query))
        parts = path.split("/")
        if method == "POST" and path in ("/v3/pay/transactions/native", "/v3/pay/transactions/h5"):
            return self._answer(handler, *self._open(path.rsplit("/", 1)[1].upper(), data or {}))
        if method == "POST" and path == "/v3/refund/domestic/refunds":
            return self._answer(handler, *self._refund(data or {}))
        if path.startswith("/v3/pay/transactions/") and query.get("mchid", self.mchid) != self.mchid:
            return self._answer(handler, 400, {"code": "PARAM_ERROR", "message": "mchid"})
        if method == "GET" and path.startswith("/v3/pay/transactions/out-trade-no/") and len(parts) == 6:
            trade = self.transactions.get(parts[5])
            if trade is None:
                return self._answer(handler, 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
            return self._answer(handler, 200, self.transaction_resource(trade))
        if method == "GET" and path.startswith("/v3/pay/transactions/id/") and len(parts) == 6:
            trade = next((t for t in self.transactions.values() if t.transaction_id == parts[5]), None)
            if trade is None or not parts[5]:
                return self._answer(handler, 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
            return self._answer(handler, 200, self.transaction_resource(trade))
        if method == "POST" and path.endswith("/close") and len(parts) == 7:
            if (data or {}).get("mchid") != self.mchid:
                return self._answer(handler, 400, {"code": "PARAM_ERROR", "message": "mchid"})
            with self._lock:
                trade = self.transactions.get(parts[5])
                if trade is None:
                    return self._answer(handler, 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
                if trade.trade_state in ("SUCCESS", "REFUND"):
                    return self._answer(handler, 400, {"code": "ORDERPAID", "message": "订单已支付"})
                trade.trade_state = "CLOSED"
            return self._answer(handler, 204, None)
        return self._answer(handler, 404, {"code": "NOT_FOUND", "message": "no such API"})

    def _open(self, trade_type: str, data: dict) -> tuple[int, dict]:
        amount = data.get("amount") or {}
        required = ("appid", "mchid", "description", "out_trade_no", "notify_url")
        if any(not isinstance(data.get(name), str) or not data[name] for name in required):
            return 400, {"code": "PARAM_ERROR", "message": "missing parameter"}
        if data["appid"] != self.appid or data["mchid"] != self.mchid:
            return 400, {"code": "APPID_MCHID_NOT_MATCH", "message": "appid和mch_id不匹配"}
        total = amount.get("total")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0 or amount.get("currency") != "CNY":
            return 400, {"code": "PARAM_ERROR", "message": "amount"}
        try:
            expire = datetime.fromisoformat(data.get("time_expire", ""))
        except ValueError:
            return 400, {"code": "PARAM_ERROR", "message": "time_expire"}
        if expire.utcoffset() is None:
            return 400, {"code": "PARAM_ERROR", "message": "time_expire needs an offset"}
        scene = data.get("scene_info") or {}
        if trade_type == "H5" and (
            not scene.get("payer_client_ip") or (scene.get("h5_info") or {}).get("type") != "Wap"
        ):
            return 400, {"code": "PARAM_ERROR", "message": "scene_info"}
        with self._lock:
            trade = self.transactions.get(data["out_trade_no"])
            if trade is not None and trade.total != total:
                return 400, {"code": "INVALID_REQUEST", "message": "201 商户订单号重复"}
            if trade is not None and trade.trade_state != "NOTPAY":
                return 400, {"code": "ORDERPAID" if trade.trade_state == "SUCCESS" else "ORDERCLOSED", "message": "!"}
            if trade is None:
                trade = Transaction(
                    out_trade_no=data["out_trade_no"],
                    trade_type=trade_type,
                    total=total,
                    description=data["description"],
                    notify_url=data["notify_url"],
                    time_expire=data["time_expire"],
                    payer_client_ip=scene.get("payer_client_ip", ""),
                )
                self.transactions[trade.out_trade_no] = trade
        prepay = "wx" + secrets.token_hex(14)
        if trade_type == "H5":
            return 200, {"h5_url": f"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay}"}
        return 200, {"code_url": f"weixin://wxpay/bizpayurl?pr={prepay[:12]}"}

    def _refund(self, data: dict) -> tuple[int, dict]:
        amount = data.get("amount") or {}
        with self._lock:
            existing = self.refunds.get(data.get("out_refund_no") or "")
            if existing is not None:
                return 200, existing  # the same request again: the same refund
            trade = next(
                (
                    t
                    for t in self.transactions.values()
                    if t.transaction_id and t.transaction_id == data.get("transaction_id")
                ),
                None,
            )
            if trade is None:
                return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"}
            refunded = sum(r["amount"]["refund"] for r in trade.refunds)
            refund = amount.get("refund")
            if amount.get("total") != trade.total or amount.get("currency") != "CNY":
                return 400, {"code": "PARAM_ERROR", "message": "total"}
            if not isinstance(refund, int) or refund <= 0 or refund + refunded > trade.total:
                return 400, {"code": "NOT_ENOUGH", "message": "退款金额超过可退金额"}
            answer = {
                "refund_id": f"5030{next(_numbers):08d}{int(time.time()):010d}{secrets.randbelow(10**6):06d}",
                "out_refund_no": data["out_refund_no"],
                "transaction_id": trade.transaction_id,
                "out_trade_no": trade.out_trade_no,
                "channel": "ORIGINAL",
                "status": "PROCESSING",
                "create_time": _now_china(),
                "amount": {
                    "total": trade.total,
                    "refund": refund,
                    "payer_total": trade.total,
                    "payer_refund": refund,
                    "currency": "CNY",
                },
                "notify_url": data.get("notify_url", ""),
            }
            self.refunds[answer["out_refund_no"]] = answer
            trade.refunds.append(answer)
            trade.trade_state = "REFUND"
        if self.auto_refund_notify and answer["notify_url"]:
            self.send_in_background(self._refund_later, answer)
        return 200, {k: v for k, v in answer.items() if k != "notify_url"}

    def _refund_later(self, refund: dict):
        time.sleep(0.2)  # after the shop has the answer, as WeChat does
        for _ in range(5):
            status, _body = self.refund_notify(refund)
            if 200 <= status < 300:
                return
            time.sleep(0.5)
