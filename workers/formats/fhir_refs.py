"""FHIR references and codes as real exports write them (pure helpers of :mod:`workers.formats.fhir`).

:func:`resolve` maps a ``Reference`` to the id the warehouse keys on, for every form FHIR allows:

=========================================================  ==============================================
``reference``                                              id
=========================================================  ==============================================
``Patient/123``, ``Patient/123/_history/2``                ``123``
``https://ehr.example/fhir/Patient/123[/_history/2]``      ``123``
``Patient?identifier=<system>|<value>``                    ``<value>`` (for practitioners only with the NPI
                                                           system ``http://hl7.org/fhir/sid/us-npi``, or none)
``#p1`` (a contained resource)                             the contained resource's identifier value (NPI
                                                           first for practitioners), else its ``id``
``urn:uuid:<uuid>``                                        ``<uuid>``
(no ``reference``) ``identifier: {system, value}``         ``value`` (logical reference, NPI rule as above)
=========================================================  ==============================================

The resource type comes from the reference (its path, ``Type?…``, the contained resource) or from
``Reference.type``; a reference to another type than expected resolves to nothing. ``display`` is never read.

:func:`code_of` picks a code from a ``CodeableConcept``: the ICD-10 coding when there is one, else the first
coding with a code; it returns the code system too (ICD-10 codes are shape-checked by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["ICD10_SYSTEMS", "NPI_SYSTEM", "RESOURCE_TYPES", "Resolved", "code_of", "is_icd10", "items", "resolve"]

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ICD10_SYSTEMS = (
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10",
    "urn:oid:2.16.840.1.113883.6.90",
)


_TYPE_NAMES = """
    Account ActivityDefinition ActorDefinition AdministrableProductDefinition AdverseEvent AllergyIntolerance
    Appointment AppointmentResponse ArtifactAssessment AuditEvent Basic Binary BiologicallyDerivedProduct
    BiologicallyDerivedProductDispense BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry
    ChargeItem ChargeItemDefinition Citation Claim ClaimResponse ClinicalImpression ClinicalUseDefinition CodeSystem
    Communication CommunicationRequest CompartmentDefinition Composition ConceptMap Condition ConditionDefinition
    Consent Contract Coverage CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device
    DeviceAssociation DeviceDefinition DeviceDispense DeviceMetric DeviceRequest DeviceUsage DeviceUseStatement
    DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis Encounter EncounterHistory Endpoint
    EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceReport EvidenceVariable
    ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag FormularyItem GenomicStudy Goal GraphDefinition
    Group GuidanceResponse HealthcareService ImagingSelection ImagingStudy Immunization ImmunizationEvaluation
    ImmunizationRecommendation ImplementationGuide Ingredient InsurancePlan InventoryItem InventoryReport Invoice
    Library Linkage List Location ManufacturedItemDefinition Measure MeasureReport Media Medication
    MedicationAdministration MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement
    MedicinalProduct MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductDefinition
    MedicinalProductIndication MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
    MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition
    MessageHeader MolecularSequence NamingSystem NutritionIntake NutritionOrder NutritionProduct Observation
    ObservationDefinition OperationDefinition OperationOutcome Organization OrganizationAffiliation
    PackagedProductDefinition Parameters Patient PaymentNotice PaymentReconciliation Permission Person
    PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse
    RegulatedAuthorization RelatedPerson RequestGroup RequestOrchestration Requirements ResearchDefinition
    ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment RiskEvidenceSynthesis Schedule
    SearchParameter ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition StructureMap Subscription
    SubscriptionStatus SubscriptionTopic Substance SubstanceDefinition SubstanceNucleicAcid SubstancePolymer
    SubstanceProtein SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery
    SupplyRequest Task TerminologyCapabilities TestPlan TestReport TestScript Transport ValueSet VerificationResult
    VisionPrescription"""
RESOURCE_TYPES = frozenset(_TYPE_NAMES.split())
"""The resource types of FHIR R4, R4B and R5: a bulk export's other types are counted by these names only."""


def items(node: Any) -> list[Any]:
    """A FHIR array element as a list: a list as is, a lone object as a list of one, anything else as empty
    (a number or string where an array goes is ignored, never iterated)."""
    if isinstance(node, list):
        return node
    return [node] if isinstance(node, dict) else []


@dataclass(frozen=True, slots=True)
class Resolved:
    """A resolved reference: the target's type (None when the reference does not say) and id."""

    type: str | None
    id: str


def is_icd10(system: str | None) -> bool:
    return system is not None and (system in ICD10_SYSTEMS or "icd-10" in system.lower())


def _identifier(identifiers: Any, *, npi_only: bool) -> str | None:
    """The value of an identifier (one or a list): the NPI one first; any other only when not ``npi_only``."""
    items = identifiers if isinstance(identifiers, list) else [identifiers]
    items = [i for i in items if isinstance(i, dict) and isinstance(i.get("value"), str) and i["value"].strip()]
    for item in items:
        if item.get("system") == NPI_SYSTEM:
            return str(item["value"]).strip()
    if npi_only or not items:
        return None
    return str(items[0]["value"]).strip()


def _conditional(text: str, practitioner: bool) -> str | None:
    """``identifier=<system>|<value>`` (URL-encoded or not) -> value, under the NPI rule."""
    for part in text.split("&"):
        name, _, value = part.partition("=")
        if name != "identifier" or not value:
            continue
        system, bar, code = unquote(value).rpartition("|")
        if not bar:
            system, code = "", unquote(value)  # pragma: no mutate (system is only compared with the NPI system)
        if practitioner and system != NPI_SYSTEM:
            continue
        if code.strip():
            return code.strip()
    return None


def resolve(reference: Any, expected: tuple[str, ...], contained: dict[str, dict[str, Any]]) -> str | None:
    """The id of the ``expected`` type(s) ``reference`` (a FHIR ``Reference`` object) points at, or None."""
    if not isinstance(reference, dict):
        return None
    practitioner = "Practitioner" in expected
    declared = reference.get("type") if isinstance(reference.get("type"), str) else None
    text = reference.get("reference")
    if not isinstance(text, str) or not text.strip():
        if declared is not None and declared not in expected:
            return None
        return _identifier(reference.get("identifier"), npi_only=practitioner)
    text = text.strip()
    if text.startswith("#"):
        target = contained.get(text[1:])
        if target is None or target.get("resourceType") not in expected:
            return None
        value = _identifier(target.get("identifier"), npi_only=False)  # pragma: no mutate (None is falsy like False)
        return value if value is not None else (target.get("id") if isinstance(target.get("id"), str) else None)
    if text.startswith("urn:uuid:"):
        if declared is not None and declared not in expected:
            return None
        return text[len("urn:uuid:") :] or None
    path, question, query = text.partition("?")
    if question:
        kind = path.rstrip("/").rpartition("/")[2]
        if kind not in expected:
            return None
        return _conditional(query, kind == "Practitioner")
    parts = path.partition("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] not in expected:  # after rstrip, parts[-1] is empty only when parts == [""]
        return None
    return parts[-1]


def code_of(concept: Any) -> tuple[str | None, str | None]:
    """``(code, system)`` of a ``CodeableConcept``: its ICD-10 coding, else its first coding with a code."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list):
        return None, None
    usable = [c for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str) and c["code"].strip()]
    for coding in usable:
        system = coding.get("system") if isinstance(coding.get("system"), str) else None
        if is_icd10(system):
            return coding["code"].strip(), system
    if not usable:
        return None, None
    first = usable[0]
    return first["code"].strip(), first.get("system") if isinstance(first.get("system"), str) else None
