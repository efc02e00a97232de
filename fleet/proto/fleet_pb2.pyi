from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CameraSpec(_message.Message):
    __slots__ = ("name", "height", "width", "encoding")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    name: str
    height: int
    width: int
    encoding: str
    def __init__(self, name: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., encoding: _Optional[str] = ...) -> None: ...

class RobotSpec(_message.Message):
    __slots__ = ("robot_id", "embodiment", "state_dim", "action_dim", "cameras", "action_low", "action_high", "software_version", "task", "fps", "trace_dim", "chunk", "num_decisions")
    ROBOT_ID_FIELD_NUMBER: _ClassVar[int]
    EMBODIMENT_FIELD_NUMBER: _ClassVar[int]
    STATE_DIM_FIELD_NUMBER: _ClassVar[int]
    ACTION_DIM_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    ACTION_LOW_FIELD_NUMBER: _ClassVar[int]
    ACTION_HIGH_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    TRACE_DIM_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    NUM_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    robot_id: str
    embodiment: str
    state_dim: int
    action_dim: int
    cameras: _containers.RepeatedCompositeFieldContainer[CameraSpec]
    action_low: _containers.RepeatedScalarFieldContainer[float]
    action_high: _containers.RepeatedScalarFieldContainer[float]
    software_version: str
    task: str
    fps: int
    trace_dim: int
    chunk: int
    num_decisions: int
    def __init__(self, robot_id: _Optional[str] = ..., embodiment: _Optional[str] = ..., state_dim: _Optional[int] = ..., action_dim: _Optional[int] = ..., cameras: _Optional[_Iterable[_Union[CameraSpec, _Mapping]]] = ..., action_low: _Optional[_Iterable[float]] = ..., action_high: _Optional[_Iterable[float]] = ..., software_version: _Optional[str] = ..., task: _Optional[str] = ..., fps: _Optional[int] = ..., trace_dim: _Optional[int] = ..., chunk: _Optional[int] = ..., num_decisions: _Optional[int] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: RobotSpec
    def __init__(self, spec: _Optional[_Union[RobotSpec, _Mapping]] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("session_id", "policy_version", "max_message_bytes", "group_size")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    policy_version: int
    max_message_bytes: int
    group_size: int
    def __init__(self, session_id: _Optional[str] = ..., policy_version: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., group_size: _Optional[int] = ...) -> None: ...

class EpisodeChunk(_message.Message):
    __slots__ = ("session_id", "robot_id", "episode_id", "chunk_index", "last", "num_steps", "state", "action", "reward", "done", "intervention", "policy_version", "timestamp", "success", "logp", "images", "success_episode", "trace", "reset_seed", "chunk_step", "chunk_action")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROBOT_ID_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    NUM_STEPS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    INTERVENTION_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LOGP_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_EPISODE_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    RESET_SEED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_STEP_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ACTION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    robot_id: str
    episode_id: str
    chunk_index: int
    last: bool
    num_steps: int
    state: bytes
    action: bytes
    reward: bytes
    done: bytes
    intervention: bytes
    policy_version: bytes
    timestamp: bytes
    success: bytes
    logp: bytes
    images: _containers.RepeatedCompositeFieldContainer[Frame]
    success_episode: bool
    trace: bytes
    reset_seed: int
    chunk_step: bytes
    chunk_action: bytes
    def __init__(self, session_id: _Optional[str] = ..., robot_id: _Optional[str] = ..., episode_id: _Optional[str] = ..., chunk_index: _Optional[int] = ..., last: _Optional[bool] = ..., num_steps: _Optional[int] = ..., state: _Optional[bytes] = ..., action: _Optional[bytes] = ..., reward: _Optional[bytes] = ..., done: _Optional[bytes] = ..., intervention: _Optional[bytes] = ..., policy_version: _Optional[bytes] = ..., timestamp: _Optional[bytes] = ..., success: _Optional[bytes] = ..., logp: _Optional[bytes] = ..., images: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ..., success_episode: _Optional[bool] = ..., trace: _Optional[bytes] = ..., reset_seed: _Optional[int] = ..., chunk_step: _Optional[bytes] = ..., chunk_action: _Optional[bytes] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("camera", "data")
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    camera: str
    data: bytes
    def __init__(self, camera: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ChunkAck(_message.Message):
    __slots__ = ("episode_id", "chunk_index", "duplicate", "stored_episodes")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    STORED_EPISODES_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    chunk_index: int
    duplicate: bool
    stored_episodes: int
    def __init__(self, episode_id: _Optional[str] = ..., chunk_index: _Optional[int] = ..., duplicate: _Optional[bool] = ..., stored_episodes: _Optional[int] = ...) -> None: ...

class PolicyRequest(_message.Message):
    __slots__ = ("session_id", "have_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HAVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    have_version: int
    def __init__(self, session_id: _Optional[str] = ..., have_version: _Optional[int] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("session_id", "version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    version: int
    def __init__(self, session_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class PolicyChunk(_message.Message):
    __slots__ = ("version", "offset", "data", "last", "total_bytes", "sha256", "config_json", "published_at")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    version: int
    offset: int
    data: bytes
    last: bool
    total_bytes: int
    sha256: str
    config_json: str
    published_at: float
    def __init__(self, version: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., config_json: _Optional[str] = ..., published_at: _Optional[float] = ...) -> None: ...

class SeedRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SeedReply(_message.Message):
    __slots__ = ("seed", "group")
    SEED_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    seed: int
    group: int
    def __init__(self, seed: _Optional[int] = ..., group: _Optional[int] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ("session_id", "held_version", "held_since", "spooled_chunks")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HELD_VERSION_FIELD_NUMBER: _ClassVar[int]
    HELD_SINCE_FIELD_NUMBER: _ClassVar[int]
    SPOOLED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    held_version: int
    held_since: float
    spooled_chunks: int
    def __init__(self, session_id: _Optional[str] = ..., held_version: _Optional[int] = ..., held_since: _Optional[float] = ..., spooled_chunks: _Optional[int] = ...) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("policy_version", "robots", "episodes", "transitions", "bytes_ingested", "rejected", "metrics_json")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROBOTS_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    BYTES_INGESTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    policy_version: int
    robots: int
    episodes: int
    transitions: int
    bytes_ingested: int
    rejected: int
    metrics_json: str
    def __init__(self, policy_version: _Optional[int] = ..., robots: _Optional[int] = ..., episodes: _Optional[int] = ..., transitions: _Optional[int] = ..., bytes_ingested: _Optional[int] = ..., rejected: _Optional[int] = ..., metrics_json: _Optional[str] = ...) -> None: ...
