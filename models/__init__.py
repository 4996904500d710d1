"""SQLAlchemy models of socialcare. Queries live beside their concept, not here."""

from models.base import Base
from models.cases import Case, CaseMessage
from models.community import CommunityAnswer, IncidentUpdate  # noqa: F401
from models.console import DigestSchedule, WebhookDelivery, WebhookSubscription  # noqa: F401
from models.cursors import ConnectorCursor
from models.customers import Author, Customer, SocialIdentity
from models.escalation import CustomerSession, SecureLink, SlaBreach
from models.knowledge import KnowledgeArticle, Template
from models.mentions import Conversation, Mention, PendingDeletion
from models.moderation import Incident, IncidentMention, ModerationAction
from models.privacy import ErasureTombstone
from models.routing import ROUTE_OUTCOMES, Reply, RouteDecision
from models.triage import TriageResult
from models.users import ROLES, ApiToken, AuditEvent, User

__all__ = [
    "ROLES", "ROUTE_OUTCOMES", "ApiToken", "AuditEvent", "Author", "Base", "Case", "CaseMessage",
    "ConnectorCursor", "Conversation", "Customer", "CustomerSession", "ErasureTombstone", "Incident", "IncidentMention", "KnowledgeArticle",
    "Mention", "ModerationAction", "PendingDeletion", "Reply", "RouteDecision", "SecureLink", "SlaBreach", "SocialIdentity", "Template", "TriageResult", "User",
]
